/**
 * Adam with the moments of all variables in two flat vectors, so that one
 * update runs a fixed dozen element-wise kernels over every parameter at once
 * instead of about fourteen kernels per variable. On tfjs-node each kernel
 * call costs tens of microseconds of JavaScript and binding time whatever
 * its size, which made the update of a MobileNet with ~60 variables cost as
 * much as a large part of its forward pass.
 *
 * The arithmetic is tf.AdamOptimizer's (tfjs-core 4.22), element by element
 * and in the same order, so results are bit-identical. getWeights and
 * setWeights use its layout too: [iterations, first moments..., second
 * moments...] named "<variable>/m" and "<variable>/v", so checkpoints of
 * either optimizer restore into the other.
 */
import * as tf from '@tensorflow/tfjs';

/** A tensor with a name, as tf.Optimizer's weights are (tfjs-core's NamedTensor, which tfjs does not re-export). */
type NamedTensor = { name: string; tensor: tf.Tensor };

interface Layout {
  names: string[];
  shapes: number[][];
  sizes: number[];
}

export class GroupedAdamOptimizer extends tf.Optimizer {
  static get className(): string {
    // The serialized name of tf.AdamOptimizer, because the state is the same.
    return 'Adam';
  }

  private readonly accBeta1: tf.Variable;
  private readonly accBeta2: tf.Variable;
  private readonly epsilon: number;
  private layout: Layout | undefined;
  private firstMoment: tf.Variable | undefined;
  private secondMoment: tf.Variable | undefined;
  /** Variable order of moments restored by setWeights, checked against the first update. */
  private restoredNames: string[] | undefined;
  /** Variable order of moments restored by setWeights, checked against the first update. */
  constructor(
    readonly learningRate: number,
    readonly beta1 = 0.9,
    readonly beta2 = 0.999,
    epsilon?: number,
  ) {
    super();
    this.epsilon = epsilon ?? tf.backend().epsilon();
    this.accBeta1 = tf.tidy(() => tf.scalar(beta1).variable(false));
    this.accBeta2 = tf.tidy(() => tf.scalar(beta2).variable(false));
  }

  override applyGradients(variableGradients: tf.NamedTensorMap | NamedTensor[]): void {
    const entries = Array.isArray(variableGradients)
      ? variableGradients.map(({ name, tensor }) => ({ name, gradient: tensor }))
      : Object.entries(variableGradients).map(([name, gradient]) => ({ name, gradient }));
    const registered = tf.engine().registeredVariables;
    const variables = entries.map(({ name }) => {
      const variable = registered[name];
      if (variable === undefined) {
        throw new Error(`Adam: variable "${name}" is not registered; pass the trainable variables of the model being trained.`);
      }
      return variable;
    });
    const missing = entries.filter((e) => e.gradient == null).map((e) => e.name);
    if (missing.length > 0) {
      // tf.AdamOptimizer leaves such variables and their moments unchanged; the flat update cannot skip them.
      throw new Error(`Adam: no gradient for ${missing.join(', ')}. Exclude variables that do not affect the loss from the trained list.`);
    }
    const layout = this.ensureLayout(entries.map((e) => e.name), variables);

    tf.tidy(() => {
      const gradient = tf.concat(entries.map((e) => tf.reshape(e.gradient, [-1])));
      const first = this.firstMoment as tf.Variable;
      const second = this.secondMoment as tf.Variable;
      const oneMinusAccBeta1 = tf.sub(1, this.accBeta1);
      const oneMinusAccBeta2 = tf.sub(1, this.accBeta2);
      const newFirst = tf.add(tf.mul(first, this.beta1), tf.mul(gradient, 1 - this.beta1));
      const newSecond = tf.add(tf.mul(second, this.beta2), tf.mul(tf.square(gradient), 1 - this.beta2));
      const correctedFirst = tf.div(newFirst, oneMinusAccBeta1);
      const correctedSecond = tf.div(newSecond, oneMinusAccBeta2);
      first.assign(newFirst);
      second.assign(newSecond);
      const update = tf.mul(tf.div(correctedFirst, tf.add(tf.sqrt(correctedSecond), this.epsilon)), -this.learningRate);
      tf.split(update, layout.sizes).forEach((piece, i) => {
        const variable = variables[i] as tf.Variable;
        variable.assign(tf.add(tf.reshape(piece, layout.shapes[i] as number[]), variable));
      });
      this.accBeta1.assign(tf.mul(this.accBeta1, this.beta1));
      this.accBeta2.assign(tf.mul(this.accBeta2, this.beta2));
    });
    this.incrementIterations();
  }

  /** Creates the flat moments on first use, or checks that the variables are the ones they were made for. */
  private ensureLayout(names: string[], variables: tf.Variable[]): Layout {
    if (this.layout !== undefined) {
      const same = this.layout.names.length === names.length && this.layout.names.every((n, i) => n === names[i]);
      if (!same) {
        throw new Error(
          `Adam: this optimizer updates [${this.layout.names.slice(0, 3).join(', ')}, ...] (${this.layout.names.length} variables) ` +
            `but received gradients for ${names.length} other ones. Create one optimizer per set of trained variables.`,
        );
      }
      return this.layout;
    }
    if (this.restoredNames !== undefined && this.restoredNames.join('\n') !== names.join('\n')) {
      throw new Error(
        `Adam: the restored moments belong to ${this.restoredNames.length} variables starting with ${this.restoredNames[0] ?? '-'}, ` +
          `but the update trains ${names.length} variables starting with ${names[0] ?? '-'}. Resume with the same model and unfreeze setting.`,
      );
    }
    const shapes = variables.map((v) => [...v.shape]);
    const sizes = variables.map((v) => v.size);
    this.layout = { names, shapes, sizes };
    const total = sizes.reduce((a, b) => a + b, 0);
    this.firstMoment ??= tf.zeros([total]).variable(false);
    this.secondMoment ??= tf.zeros([total]).variable(false);
    if (this.firstMoment.size !== total) {
      throw new Error(`Adam: the restored moments hold ${this.firstMoment.size} values, but the trained variables have ${total}.`);
    }
    return this.layout;
  }

  override async getWeights(): Promise<NamedTensor[]> {
    const iterations = await this.saveIterations();
    if (this.layout === undefined || this.firstMoment === undefined || this.secondMoment === undefined) {
      return [iterations];
    }
    const { names, shapes, sizes } = this.layout;
    const unpack = (flat: tf.Tensor, suffix: string) =>
      tf.split(flat, sizes).map((piece, i) => ({ name: `${names[i]}/${suffix}`, tensor: tf.reshape(piece, shapes[i] as number[]) }));
    return [iterations, ...unpack(this.firstMoment, 'm'), ...unpack(this.secondMoment, 'v')];
  }

  override async setWeights(weightValues: NamedTensor[]): Promise<void> {
    const moments = await this.extractIterations(weightValues);
    tf.tidy(() => {
      this.accBeta1.assign(tf.pow(this.beta1, this.iterations + 1));
      this.accBeta2.assign(tf.pow(this.beta2, this.iterations + 1));
    });
    const count = moments.length / 2;
    const first = moments.slice(0, count);
    const second = moments.slice(count);
    this.firstMoment?.dispose();
    this.secondMoment?.dispose();
    this.firstMoment = tf.tidy(() => tf.concat(first.map((m) => tf.reshape(m.tensor, [-1]))).variable(false));
    this.secondMoment = tf.tidy(() => tf.concat(second.map((m) => tf.reshape(m.tensor, [-1]))).variable(false));
    // The order of the restored moments fixes the variable order; shapes come from the first update.
    this.layout = undefined;
    this.restoredNames = first.map((m) => m.name.replace(/\/m$/, ''));
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { learningRate: this.learningRate, beta1: this.beta1, beta2: this.beta2, epsilon: this.epsilon };
  }

  override dispose(): void {
    super.dispose();
    this.accBeta1.dispose();
    this.accBeta2.dispose();
    this.firstMoment?.dispose();
    this.secondMoment?.dispose();
  }
}
