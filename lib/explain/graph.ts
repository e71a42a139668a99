/**
 * Runs a functional tfjs LayersModel in two parts around one layer. The
 * first part is the forward pass up to that layer's output, and the second is
 * the rest of the model as a function of that output, which tf.grad can
 * differentiate with respect to the layer's activations.
 *
 * tfjs has no tape that can be pointed at an intermediate tensor of
 * model.predict, so the model's graph is executed node by node here, calling
 * each layer's apply() on concrete tensors as tfjs's own executor does. Tensors
 * that do not depend on the split layer (skip connections that bypass it, for
 * example) are computed once in the forward pass and enter the second part as
 * constants, which gives the same partial derivative as Keras's GradientTape
 * on the layer's output.
 */
import * as tf from '@tensorflow/tfjs';

type Sym = tf.SymbolicTensor;

/** Score of the target class: the pre-softmax logit, or the softmax probability. */
export type ScoreKind = 'logit' | 'probability';

export interface ForwardResult {
  /** Output of the split layer, [n, height, width, channels]. */
  activations: tf.Tensor4D;
  /** Class probabilities, [n, classes]. */
  probabilities: tf.Tensor2D;
  /** Class scores of the kind given to splitModel, [n, classes]. */
  scores: tf.Tensor2D;
  /** Tensors computed before the split that the second part reads; owned by the result. */
  upstream: Map<number, tf.Tensor>;
}

export interface SplitModel {
  /** The split layer's name. */
  layerName: string;
  /** Shape of the split layer's output without the batch dimension: [height, width, channels]. */
  featureShape: [number, number, number];
  scoreKind: ScoreKind;
  /** Runs the model on a preprocessed batch and keeps what headScores needs. */
  forward(input: tf.Tensor4D): ForwardResult;
  /** Class scores [n, classes] computed from (possibly replaced) split-layer activations. */
  headScores(activations: tf.Tensor4D, upstream: Map<number, tf.Tensor>): tf.Tensor2D;
  /** Class probabilities [n, classes] of a preprocessed batch, by model.predict. */
  predict(input: tf.Tensor4D): tf.Tensor2D;
}

/** Releases the tensors of a forward result. */
export function disposeForward(result: ForwardResult): void {
  result.activations.dispose();
  result.probabilities.dispose();
  result.scores.dispose();
  for (const tensor of result.upstream.values()) {
    tensor.dispose();
  }
  result.upstream.clear();
}

/** Returns the layer, inputs and call arguments of the graph node that produced a symbolic tensor. */
function producerOf(sym: Sym): { layer: tf.layers.Layer; inputs: Sym[]; callArgs: Record<string, unknown> } {
  const layer = sym.sourceLayer as tf.layers.Layer;
  const node = layer.inboundNodes[sym.nodeIndex];
  if (node === undefined) {
    throw new Error(`Layer "${layer.name}" has no inbound node ${sym.nodeIndex}; the model graph is inconsistent.`);
  }
  return { layer, inputs: node.inputTensors, callArgs: (node.callArgs ?? {}) as Record<string, unknown> };
}

function isInput(model: tf.LayersModel, sym: Sym): boolean {
  return model.inputs.some((input) => input.id === sym.id);
}

/** Collects every symbolic tensor that the model's outputs are computed from, inputs included. */
function reachableTensors(model: tf.LayersModel): Sym[] {
  const seen = new Map<number, Sym>();
  const stack = [...model.outputs];
  while (stack.length > 0) {
    const sym = stack.pop() as Sym;
    if (seen.has(sym.id)) {
      continue;
    }
    seen.set(sym.id, sym);
    if (!isInput(model, sym)) {
      stack.push(...producerOf(sym).inputs);
    }
  }
  return [...seen.values()];
}

/** Names of the model's layers whose output is a 4-D feature map, in model order. */
export function featureMapLayers(model: tf.LayersModel): string[] {
  return model.layers
    .filter((layer) => layer.getClassName() !== 'InputLayer')
    .filter((layer) => {
      const shape = layer.outputShape;
      return Array.isArray(shape) && !Array.isArray(shape[0]) && shape.length === 4;
    })
    .map((layer) => layer.name);
}

/** Finds the model's symbolic tensor that a layer outputs, rejecting shared and non-spatial layers. */
function layerOutput(model: tf.LayersModel, layerName: string, tensors: readonly Sym[]): Sym {
  const matches = tensors.filter((sym) => sym.sourceLayer.name === layerName);
  if (matches.length === 0) {
    const exists = model.layers.some((layer) => layer.name === layerName);
    const candidates = featureMapLayers(model);
    const hint = candidates.slice(-5).join(', ');
    throw new Error(
      exists
        ? `Layer "${layerName}" does not feed the output of model "${model.name}", so it has no class activation map.`
        : `Layer "${layerName}" not found in model "${model.name}". Layers with 4-D feature maps near the output: ${hint}.`,
    );
  }
  if (matches.length > 1) {
    throw new Error(
      `Layer "${layerName}" is applied ${matches.length} times in model "${model.name}" (a shared layer), ` +
        'so its output is ambiguous. Name a layer that is applied once.',
    );
  }
  const sym = matches[0] as Sym;
  const [, h, w, c] = sym.shape;
  if (sym.shape.length !== 4 || h == null || w == null || c == null) {
    throw new Error(
      `Layer "${layerName}" outputs shape ${JSON.stringify(sym.shape)}; a class activation map needs a 4-D feature map ` +
        '[batch, height, width, channels] of known size. Name a convolutional, batch-norm or activation layer of the backbone.',
    );
  }
  return sym;
}

/**
 * Returns the logits that the output layer turns into probabilities: a Dense
 * layer with a softmax activation, or a separate softmax Activation layer.
 */
function logitFunction(model: tf.LayersModel, output: Sym): { before: Sym; apply: (x: tf.Tensor) => tf.Tensor } {
  const { layer, inputs } = producerOf(output);
  const config = layer.getConfig();
  const before = inputs[0] as Sym;
  if (layer.getClassName() === 'Activation' && config['activation'] === 'softmax' && inputs.length === 1) {
    return { before, apply: (x) => x };
  }
  if (layer.getClassName() === 'Dense' && config['activation'] === 'softmax' && inputs.length === 1) {
    // Kernel then bias, in tfjs's (and Keras's) weight order for Dense.
    const [kernel, bias] = layer.weights;
    if (kernel === undefined) {
      throw new Error(`Output layer "${layer.name}" has no kernel weight.`);
    }
    return {
      before,
      apply: (x) => {
        const z = tf.matMul(x as tf.Tensor2D, kernel.read() as tf.Tensor2D);
        return bias === undefined ? z : tf.add(z, bias.read());
      },
    };
  }
  throw new Error(
    `Cannot take pre-softmax logits from model "${model.name}": its output layer "${layer.name}" is a ` +
      `${layer.getClassName()} with activation ${JSON.stringify(config['activation'])}, not a softmax Dense or Activation layer. ` +
      "Score the class by its probability instead (score 'probability').",
  );
}

/**
 * Evaluates symbolic tensors on concrete inputs, caching every value in
 * `values` (keyed by symbolic tensor id). Iterative, so deep models do not
 * exhaust the call stack.
 */
function evaluate(target: Sym, values: Map<number, tf.Tensor>): tf.Tensor {
  const stack: Sym[] = [target];
  while (stack.length > 0) {
    const sym = stack[stack.length - 1] as Sym;
    if (values.has(sym.id)) {
      stack.pop();
      continue;
    }
    const { layer, inputs, callArgs } = producerOf(sym);
    if (layer.getClassName() === 'InputLayer') {
      throw new Error(`No value was fed for the model input "${sym.name}".`);
    }
    const missing = inputs.filter((input) => !values.has(input.id));
    if (missing.length > 0) {
      stack.push(...missing);
      continue;
    }
    const inputValues = inputs.map((input) => values.get(input.id) as tf.Tensor);
    const outputs = layer.apply(inputValues.length === 1 ? (inputValues[0] as tf.Tensor) : inputValues, {
      ...callArgs,
      training: false,
    }) as tf.Tensor | tf.Tensor[];
    const outputList = Array.isArray(outputs) ? outputs : [outputs];
    const node = layer.inboundNodes[sym.nodeIndex];
    node?.outputTensors.forEach((outputSym, i) => {
      const value = outputList[i];
      if (value !== undefined) {
        values.set(outputSym.id, value);
      }
    });
    if (!values.has(sym.id)) {
      throw new Error(`Layer "${layer.name}" returned ${outputList.length} outputs; output ${sym.tensorIndex} is missing.`);
    }
    stack.pop();
  }
  return values.get(target.id) as tf.Tensor;
}

/**
 * Splits a single-input, single-output functional model at a layer's output.
 * The layer must be applied once in the model and output a 4-D feature map.
 */
export function splitModel(model: tf.LayersModel, layerName: string, scoreKind: ScoreKind = 'logit'): SplitModel {
  if (model.inputs.length !== 1 || model.outputs.length !== 1) {
    throw new Error(
      `Model "${model.name}" has ${model.inputs.length} inputs and ${model.outputs.length} outputs; class activation maps need exactly one of each.`,
    );
  }
  const tensors = reachableTensors(model);
  const output = model.outputs[0] as Sym;
  const input = model.inputs[0] as Sym;
  const split = layerOutput(model, layerName, tensors);
  const logits = scoreKind === 'logit' ? logitFunction(model, output) : undefined;
  const scoreSym = logits?.before ?? output;

  // Tensors downstream of the split depend on it; the others are constants for the second part.
  const dependsOnSplit = new Map<number, boolean>();
  const depends = (sym: Sym): boolean => {
    const known = dependsOnSplit.get(sym.id);
    if (known !== undefined) {
      return known;
    }
    const stack: Sym[] = [sym];
    while (stack.length > 0) {
      const top = stack[stack.length - 1] as Sym;
      if (dependsOnSplit.has(top.id)) {
        stack.pop();
        continue;
      }
      if (top.id === split.id) {
        dependsOnSplit.set(top.id, true);
        stack.pop();
        continue;
      }
      if (isInput(model, top)) {
        dependsOnSplit.set(top.id, false);
        stack.pop();
        continue;
      }
      const inputs = producerOf(top).inputs;
      const pending = inputs.filter((i) => !dependsOnSplit.has(i.id));
      if (pending.length > 0) {
        stack.push(...pending);
        continue;
      }
      dependsOnSplit.set(top.id, inputs.some((i) => dependsOnSplit.get(i.id) === true));
      stack.pop();
    }
    return dependsOnSplit.get(sym.id) as boolean;
  };
  if (!depends(scoreSym)) {
    throw new Error(`The output of model "${model.name}" does not depend on layer "${layerName}".`);
  }
  // Constants the second part reads: inputs of downstream nodes that do not depend on the split.
  const upstreamIds = new Set<number>();
  for (const sym of tensors) {
    if (sym.id === split.id || isInput(model, sym) || !depends(sym)) {
      continue;
    }
    for (const inputSym of producerOf(sym).inputs) {
      if (!depends(inputSym)) {
        upstreamIds.add(inputSym.id);
      }
    }
  }

  const toScores = (value: tf.Tensor): tf.Tensor2D => (logits !== undefined ? logits.apply(value) : value) as tf.Tensor2D;

  return {
    layerName,
    featureShape: [split.shape[1] as number, split.shape[2] as number, split.shape[3] as number],
    scoreKind,
    forward(x: tf.Tensor4D): ForwardResult {
      // NOTE: every intermediate tensor of the batch lives until the tidy ends, unlike in model.predict,
      // so peak memory grows with the whole network's activations; lower the batch size for large backbones.
      const kept = tf.tidy(() => {
        const values = new Map<number, tf.Tensor>([[input.id, x]]);
        const activations = evaluate(split, values) as tf.Tensor4D;
        const probabilities = evaluate(output, values) as tf.Tensor2D;
        const scores = logits !== undefined ? toScores(evaluate(scoreSym, values)) : probabilities.clone();
        const upstream = [...upstreamIds].map((id) => [id, values.get(id) as tf.Tensor] as const);
        // Clones keep identity layers (inference-mode dropout) from handing back one tensor under two ids.
        return [activations.clone(), probabilities.clone(), scores, ...upstream.map(([, t]) => t.clone())];
      });
      const [activations, probabilities, scores, ...rest] = kept;
      const upstream = new Map<number, tf.Tensor>([...upstreamIds].map((id, i) => [id, rest[i] as tf.Tensor]));
      return {
        activations: activations as tf.Tensor4D,
        probabilities: probabilities as tf.Tensor2D,
        scores: scores as tf.Tensor2D,
        upstream,
      };
    },
    headScores(activations: tf.Tensor4D, upstream: Map<number, tf.Tensor>): tf.Tensor2D {
      const values = new Map<number, tf.Tensor>(upstream);
      values.set(split.id, activations);
      return toScores(evaluate(scoreSym, values));
    },
    predict(x: tf.Tensor4D): tf.Tensor2D {
      return model.predict(x) as tf.Tensor2D;
    },
  };
}
