/**
 * Builds a TensorFlow graph (GraphDef nodes) with reverse-mode gradients.
 *
 * Each forward operation that depends on a trained variable records how to
 * turn the gradient of its output into gradients of its inputs, with
 * TensorFlow's own gradient kernels (Conv2DBackpropInput, ReluGrad, ...).
 * `gradients` then walks the records backwards from the loss. Shapes are
 * tracked statically with -1 for the batch dimension, which stays free so
 * that the last, smaller batch of an epoch runs through the same graph.
 */
import { DT, tensorProto, type Attr, type DataType, type NodeDef } from './proto';

/** A graph tensor: "node" or "node:k", with its static shape (-1 unknown). */
export interface Sym {
  name: string;
  shape: number[];
  dtype: DataType;
  /** Whether a trained variable feeds it, so that its gradient is needed. */
  grad: boolean;
}

type Backward = (dy: Sym) => Array<Sym | undefined>;

interface Record {
  inputs: Sym[];
  output: Sym;
  backward: Backward;
}

const T = (dtype: DataType = DT.float): Attr => ({ type: dtype });

export class TfGraph {
  readonly nodes: NodeDef[] = [];
  private readonly tape: Record[] = [];
  private readonly used = new Set<string>();

  unique(base: string): string {
    const clean = base.replace(/[^A-Za-z0-9_./-]+/g, '_').replace(/^[^A-Za-z0-9.]+/, 'n');
    let name = clean;
    for (let i = 1; this.used.has(name); i++) {
      name = `${clean}_${i}`;
    }
    this.used.add(name);
    return name;
  }

  /** Adds a node and returns its name. */
  add(op: string, base: string, inputs: Array<Sym | string>, attrs: { [key: string]: Attr } = {}): string {
    const name = this.unique(base);
    this.nodes.push({ name, op, inputs: inputs.map((i) => (typeof i === 'string' ? i : i.name)), attrs });
    return name;
  }

  /** Adds a node with one float (or `dtype`) output of `shape`; with `backward` and an input that needs a gradient, it goes on the tape. */
  op(op: string, base: string, inputs: Sym[], attrs: { [key: string]: Attr }, shape: number[], backward?: Backward, dtype: DataType = DT.float): Sym {
    const grad = backward !== undefined && inputs.some((i) => i.grad);
    const output: Sym = { name: this.add(op, base, inputs, attrs), shape, dtype, grad };
    if (grad) {
      this.tape.push({ inputs, output, backward: backward as Backward });
    }
    return output;
  }

  /**
   * Puts a composite operation on the tape: `output` was computed from
   * `inputs` by nodes added without gradients, and `backward` gives the
   * gradients of all of them at once. Returns `output` marked as needing a
   * gradient when any input does.
   */
  composite(inputs: Sym[], output: Sym, backward: Backward): Sym {
    const grad = inputs.some((i) => i.grad);
    const marked = { ...output, grad };
    if (grad) {
      this.tape.push({ inputs, output: marked, backward });
    }
    return marked;
  }

  /** Returns a copy of `x` that no tape record follows, for nodes inside a composite operation. */
  static plain(x: Sym): Sym {
    return { ...x, grad: false };
  }

  /** Adds a mean over `axes`, kept as size-1 dimensions, without a gradient. */
  mean(x: Sym, axes: number[]): Sym {
    const shape = x.shape.map((s, i) => (axes.includes(i) ? 1 : s));
    return this.op('Mean', `${baseOf(x)}/mean`, [x, this.intConstant(`${baseOf(x)}/mean_axes`, axes)], { T: T(), Tidx: T(DT.int32), keep_dims: { b: true } }, shape);
  }

  constant(base: string, values: Float32Array | number[], shape: number[]): Sym {
    const data = values instanceof Float32Array ? values : Float32Array.from(values);
    return this.constantOf(base, data, shape, DT.float);
  }

  intConstant(base: string, values: number[], shape: number[] = [values.length]): Sym {
    return this.constantOf(base, Int32Array.from(values), shape, DT.int32);
  }

  private constantOf(base: string, data: Float32Array | Int32Array, shape: number[], dtype: DataType): Sym {
    const tensor = tensorProto(dtype, shape, data);
    return { name: this.add('Const', base, [], { dtype: T(dtype), value: { tensor } }), shape, dtype, grad: false };
  }

  placeholder(name: string, shape: number[], dtype: DataType = DT.float): Sym {
    return { name: this.add('Placeholder', name, [], { dtype: T(dtype), shape: { shape } }), shape, dtype, grad: false };
  }

  /** Adds a resource variable handle; `read` reads it. */
  variable(name: string, shape: number[]): string {
    return this.add('VarHandleOp', name, [], { dtype: T(), shape: { shape }, shared_name: { s: name }, container: { s: '' } });
  }

  read(handle: string, shape: number[], trained: boolean): Sym {
    return { name: this.add('ReadVariableOp', `${handle}/read`, [handle], { dtype: T() }), shape, dtype: DT.float, grad: trained };
  }

  shape(x: Sym): Sym {
    return { name: this.add('Shape', `${baseOf(x)}/shape`, [x], { T: T(x.dtype), out_type: T(DT.int32) }), shape: [x.shape.length], dtype: DT.int32, grad: false };
  }

  // Element-wise operations with broadcasting; gradients are summed back to each operand's shape.

  binary(op: 'AddV2' | 'Mul' | 'Sub', base: string, a: Sym, b: Sym): Sym {
    const shape = broadcastShape(a.shape, b.shape);
    return this.op(op, base, [a, b], { T: T() }, shape, (dy) => {
      let da: Sym | undefined;
      let db: Sym | undefined;
      if (a.grad) {
        da = op === 'Mul' ? this.binary('Mul', `${base}/grad_a`, dy, b) : dy;
      }
      if (b.grad && op === 'Mul') {
        db = this.binary('Mul', `${base}/grad_b`, dy, a);
      } else if (b.grad) {
        db = op === 'Sub' ? this.unary('Neg', `${base}/grad_b`, dy) : dy;
      }
      return [da === undefined ? undefined : this.reduceTo(da, a.shape), db === undefined ? undefined : this.reduceTo(db, b.shape)];
    });
  }

  /** Sums `x` over the axes where `shape` was broadcast. */
  reduceTo(x: Sym, shape: number[]): Sym {
    const offset = x.shape.length - shape.length;
    const axes: number[] = [];
    x.shape.forEach((size, axis) => {
      const target = axis < offset ? undefined : shape[axis - offset];
      if (target === undefined || (target === 1 && size !== 1)) {
        axes.push(axis);
      }
    });
    if (axes.length === 0) {
      return x;
    }
    const summed = this.sum(x, axes, true);
    return offset === 0 ? summed : this.reshape(summed, shape);
  }

  unary(op: string, base: string, x: Sym): Sym {
    return this.op(op, base, [x], { T: T() }, x.shape);
  }

  sum(x: Sym, axes: number[], keepDims: boolean): Sym {
    const shape = keepDims ? x.shape.map((s, i) => (axes.includes(i) ? 1 : s)) : x.shape.filter((_, i) => !axes.includes(i));
    return this.op('Sum', `${baseOf(x)}/sum`, [x, this.intConstant(`${baseOf(x)}/axes`, axes)], { T: T(), Tidx: T(DT.int32), keep_dims: { b: keepDims } }, shape);
  }

  /** Reshape to a static shape (one -1 allowed), or to another tensor's runtime shape. */
  reshape(x: Sym, shape: number[] | Sym): Sym {
    const target = Array.isArray(shape) ? this.intConstant(`${baseOf(x)}/target`, shape) : this.shape(shape);
    const staticShape = Array.isArray(shape) ? shape : shape.shape;
    return this.op('Reshape', `${baseOf(x)}/reshape`, [x, target], { T: T(), Tshape: T(DT.int32) }, staticShape, (dy) => [this.reshape(dy, x)]);
  }

  /** Sums gradients that reach one tensor along several paths. */
  private accumulate(parts: Sym[]): Sym {
    if (parts.length === 1) {
      return parts[0] as Sym;
    }
    const first = parts[0] as Sym;
    return this.op('AddN', `${baseOf(first)}/accumulated`, parts, { N: { i: parts.length }, T: T() }, first.shape);
  }

  /**
   * Gradients of `output` (seeded with `seed`, its own gradient) with respect
   * to each of `targets` (variable reads), or undefined where no path exists.
   */
  gradients(output: Sym, seed: Sym, targets: Sym[]): Array<Sym | undefined> {
    const pending = new Map<string, Sym[]>([[output.name, [seed]]]);
    const records = [...this.tape];
    for (let i = records.length - 1; i >= 0; i--) {
      const record = records[i] as Record;
      const parts = pending.get(record.output.name);
      if (parts === undefined) {
        continue;
      }
      pending.delete(record.output.name);
      const dy = this.accumulate(parts);
      const grads = record.backward(dy);
      record.inputs.forEach((input, k) => {
        const g = grads[k];
        if (g === undefined || !input.grad) {
          return;
        }
        pending.set(input.name, [...(pending.get(input.name) ?? []), g]);
      });
    }
    return targets.map((t) => {
      const parts = pending.get(t.name);
      return parts === undefined ? undefined : this.accumulate(parts);
    });
  }
}

export function baseOf(x: Sym): string {
  return x.name.replace(/:\d+$/, '');
}

export function broadcastShape(a: number[], b: number[]): number[] {
  const rank = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < rank; i++) {
    const da = a[a.length - rank + i] ?? 1;
    const db = b[b.length - rank + i] ?? 1;
    out.push(da === 1 ? db : da);
  }
  return out;
}
