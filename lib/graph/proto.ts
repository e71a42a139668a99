/**
 * A minimal protocol-buffer writer for the TensorFlow messages that a
 * SavedModel file needs (SavedModel, MetaGraphDef, GraphDef, NodeDef,
 * AttrValue, TensorProto, SignatureDef). Field numbers follow
 * tensorflow/core/protobuf/saved_model.proto, meta_graph.proto and
 * tensorflow/core/framework/{graph,node_def,attr_value,tensor,tensor_shape}.proto.
 *
 * A message is a list of byte chunks and their total length, so a large
 * constant (frozen weights) is copied once, when the file is assembled.
 */

/** TensorFlow's DataType enum values used here (types.proto). */
export const DT = { float: 1, int32: 3, bool: 10, int64: 9, resource: 20 } as const;
export type DataType = (typeof DT)[keyof typeof DT];

export class Message {
  readonly chunks: Uint8Array[] = [];
  length = 0;

  private push(chunk: Uint8Array): void {
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.length += chunk.length;
    }
  }

  private varint(value: number): void {
    const bytes: number[] = [];
    if (value < 0) {
      // Negative int64: ten bytes of two's complement.
      let big = BigInt.asUintN(64, BigInt(value));
      while (big >= 0x80n) {
        bytes.push(Number(big & 0x7fn) | 0x80);
        big >>= 7n;
      }
      bytes.push(Number(big));
    } else {
      let v = value;
      while (v >= 0x80) {
        bytes.push((v % 0x80) | 0x80);
        v = Math.floor(v / 0x80);
      }
      bytes.push(v);
    }
    this.push(Uint8Array.from(bytes));
  }

  private key(field: number, wireType: number): void {
    this.varint(field * 8 + wireType);
  }

  int(field: number, value: number): this {
    this.key(field, 0);
    this.varint(value);
    return this;
  }

  bool(field: number, value: boolean): this {
    return this.int(field, value ? 1 : 0);
  }

  float(field: number, value: number): this {
    this.key(field, 5);
    const bytes = new Uint8Array(4);
    new DataView(bytes.buffer).setFloat32(0, value, true);
    this.push(bytes);
    return this;
  }

  bytes(field: number, value: Uint8Array): this {
    this.key(field, 2);
    this.varint(value.length);
    this.push(value);
    return this;
  }

  string(field: number, value: string): this {
    return this.bytes(field, new TextEncoder().encode(value));
  }

  message(field: number, value: Message): this {
    this.key(field, 2);
    this.varint(value.length);
    for (const chunk of value.chunks) {
      this.push(chunk);
    }
    return this;
  }

  /** Writes a packed repeated varint field. */
  packed(field: number, values: number[]): this {
    const inner = new Message();
    for (const v of values) {
      inner.varint(v);
    }
    return this.message(field, inner);
  }

  /** Writes one entry of a map<string, Message> field. */
  mapEntry(field: number, key: string, value: Message): this {
    return this.message(field, new Message().string(1, key).message(2, value));
  }

  toBytes(): Uint8Array {
    const out = new Uint8Array(this.length);
    let offset = 0;
    for (const chunk of this.chunks) {
      out.set(chunk, offset);
      offset += chunk.length;
    }
    return out;
  }
}

/** TensorShapeProto; -1 is an unknown dimension. */
export function shapeProto(shape: readonly number[]): Message {
  const message = new Message();
  for (const size of shape) {
    message.message(2, new Message().int(1, size));
  }
  return message;
}

/** TensorProto holding float32 or int32 values in tensor_content. */
export function tensorProto(dtype: DataType, shape: readonly number[], values: Float32Array | Int32Array): Message {
  const bytes = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  return new Message().int(1, dtype).message(2, shapeProto(shape)).bytes(4, bytes);
}

/** The value of one node attribute. */
export type Attr =
  | { type: DataType }
  | { i: number }
  | { f: number }
  | { b: boolean }
  | { s: string }
  | { ints: number[] }
  | { shape: number[] }
  | { tensor: Message };

export function attrValue(attr: Attr): Message {
  const m = new Message();
  if ('type' in attr) {
    return m.int(6, attr.type);
  }
  if ('i' in attr) {
    return m.int(3, attr.i);
  }
  if ('f' in attr) {
    return m.float(4, attr.f);
  }
  if ('b' in attr) {
    return m.bool(5, attr.b);
  }
  if ('s' in attr) {
    return m.string(2, attr.s);
  }
  if ('ints' in attr) {
    return m.message(1, new Message().packed(3, attr.ints));
  }
  if ('shape' in attr) {
    return m.message(7, shapeProto(attr.shape));
  }
  return m.message(8, attr.tensor);
}

export interface NodeDef {
  name: string;
  op: string;
  /** "node", "node:1", or "^node" for a control dependency. */
  inputs: string[];
  attrs: Record<string, Attr>;
}

export function nodeDefProto(node: NodeDef): Message {
  const m = new Message().string(1, node.name).string(2, node.op);
  for (const input of node.inputs) {
    m.string(3, input);
  }
  for (const [key, value] of Object.entries(node.attrs)) {
    m.mapEntry(5, key, attrValue(value));
  }
  return m;
}

export interface TensorInfo {
  /** "node:0" */
  name: string;
  dtype: DataType;
  shape: number[];
}

export interface Signature {
  inputs: Record<string, TensorInfo>;
  outputs: Record<string, TensorInfo>;
}

function tensorInfoProto(info: TensorInfo): Message {
  return new Message().string(1, info.name).int(2, info.dtype).message(3, shapeProto(info.shape));
}

/**
 * Serializes a SavedModel with one meta graph: the nodes, the tags and the
 * signatures. It has no variables folder, so loading restores nothing; the
 * graph's resource variables start uninitialized until a signature assigns them.
 */
export function savedModelBytes(nodes: readonly NodeDef[], tags: string[], signatures: Record<string, Signature>): Uint8Array {
  const graph = new Message();
  for (const node of nodes) {
    graph.message(1, nodeDefProto(node));
  }
  // VersionDef: producer 1087 is a TensorFlow 2.x graph version; min_consumer 0.
  graph.message(4, new Message().int(1, 1087));
  const metaInfo = new Message();
  for (const tag of tags) {
    metaInfo.string(4, tag);
  }
  const metaGraph = new Message().message(1, metaInfo).message(2, graph);
  for (const [key, signature] of Object.entries(signatures)) {
    const def = new Message();
    for (const [name, info] of Object.entries(signature.inputs)) {
      def.mapEntry(1, name, tensorInfoProto(info));
    }
    for (const [name, info] of Object.entries(signature.outputs)) {
      def.mapEntry(2, name, tensorInfoProto(info));
    }
    def.string(3, 'tensorflow/serving/predict');
    metaGraph.mapEntry(5, key, def);
  }
  return new Message().int(1, 1).message(2, metaGraph).toBytes();
}
