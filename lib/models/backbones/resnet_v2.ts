/**
 * ResNet50V2, ResNet101V2 and ResNet152V2 (pre-activation ResNets) with Keras
 * Applications' layer names and structure (keras/src/applications/resnet.py
 * and resnet_v2.py, Keras 3.15).
 */
import * as tf from '@tensorflow/tfjs';

import type { BackboneBuildOptions, BackboneSpec, BuiltBackbone } from '../types';
import { apply, batchNorm, conv2d, relu, type Sym, zeroPad } from './common';

const IMAGENET_CLASSES = 1000;

/** Keras's ResNet batch norms use 1.001e-5 in place of the default 1e-3. */
const RESNET_BN_EPSILON = 1.001e-5;

export type ResNetV2Depth = 50 | 101 | 152;

/** Residual blocks per stage conv2..conv5; the bottleneck has 64, 128, 256, 512 filters. */
const STAGE_BLOCKS: Record<ResNetV2Depth, readonly [number, number, number, number]> = {
  50: [3, 4, 6, 3],
  101: [3, 4, 23, 3],
  152: [3, 8, 36, 3],
};

const STAGE_FILTERS = [64, 128, 256, 512] as const;

interface StagePlan {
  stage: string;
  filters: number;
  blocks: number;
  /** Stride of the stage's last block: 2 in conv2-conv4, 1 in conv5. */
  lastStride: 1 | 2;
}

function stagePlan(depth: ResNetV2Depth): StagePlan[] {
  return STAGE_BLOCKS[depth].map((blocks, i) => ({
    stage: `conv${i + 2}`,
    filters: STAGE_FILTERS[i] as number,
    blocks,
    lastStride: i < 3 ? 2 : 1,
  }));
}

/**
 * Keras's unnamed MaxPooling2D(1, strides=2) shortcuts get the automatic
 * names max_pooling2d, max_pooling2d_1, ... in build order, as in a fresh
 * Keras session. The names matter only for listings, because the layer has no weights.
 */
function shortcutPoolName(index: number): string {
  return index === 0 ? 'max_pooling2d' : `max_pooling2d_${index}`;
}

/** Keras's residual_block_v2: BN-ReLU pre-activation, 1x1, 3x3 (with the stride), 1x1 expansion by 4. */
function residualBlockV2(x: Sym, filters: number, name: string, stride: 1 | 2, convShortcut: boolean, poolName: string): Sym {
  let preact = batchNorm(x, `${name}_preact_bn`, RESNET_BN_EPSILON);
  preact = relu(preact, `${name}_preact_relu`);

  let shortcut: Sym;
  if (convShortcut) {
    shortcut = conv2d(preact, { name: `${name}_0_conv`, filters: 4 * filters, kernelSize: 1, strides: stride });
  } else if (stride > 1) {
    shortcut = apply(tf.layers.maxPooling2d({ name: poolName, poolSize: 1, strides: stride }), x);
  } else {
    shortcut = x;
  }

  let y = conv2d(preact, { name: `${name}_1_conv`, filters, kernelSize: 1, useBias: false });
  y = batchNorm(y, `${name}_1_bn`, RESNET_BN_EPSILON);
  y = relu(y, `${name}_1_relu`);
  y = zeroPad(y, `${name}_2_pad`, [
    [1, 1],
    [1, 1],
  ]);
  y = conv2d(y, { name: `${name}_2_conv`, filters, kernelSize: 3, strides: stride, useBias: false });
  y = batchNorm(y, `${name}_2_bn`, RESNET_BN_EPSILON);
  y = relu(y, `${name}_2_relu`);
  y = conv2d(y, { name: `${name}_3_conv`, filters: 4 * filters, kernelSize: 1 });
  return apply(tf.layers.add({ name: `${name}_out` }), [shortcut, y]);
}

export function buildResNetV2(input: Sym, depth: ResNetV2Depth, options: BackboneBuildOptions = {}): BuiltBackbone {
  let x = zeroPad(input, 'conv1_pad', [
    [3, 3],
    [3, 3],
  ]);
  x = conv2d(x, { name: 'conv1_conv', filters: 64, kernelSize: 7, strides: 2 });
  x = zeroPad(x, 'pool1_pad', [
    [1, 1],
    [1, 1],
  ]);
  x = apply(tf.layers.maxPooling2d({ name: 'pool1_pool', poolSize: 3, strides: 2 }), x);

  let pools = 0;
  for (const { stage, filters, blocks, lastStride } of stagePlan(depth)) {
    for (let b = 1; b <= blocks; b++) {
      const stride = b === blocks ? lastStride : 1;
      const poolName = shortcutPoolName(pools);
      if (b > 1 && stride > 1) {
        pools++;
      }
      x = residualBlockV2(x, filters, `${stage}_block${b}`, stride, b === 1, poolName);
    }
  }

  x = batchNorm(x, 'post_bn', RESNET_BN_EPSILON);
  const features = relu(x, 'post_relu');
  if (!options.includeTop) {
    return { features };
  }
  let top = apply(tf.layers.globalAveragePooling2d({ name: 'avg_pool' }), features);
  top = apply(tf.layers.dense({ name: 'predictions', units: IMAGENET_CLASSES, activation: 'softmax' }), top);
  return { features, top };
}

/** Block names from input to output: the stem, then every residual block. */
function resNetV2Blocks(depth: ResNetV2Depth): string[] {
  const blocks = ['stem'];
  for (const { stage, blocks: count } of stagePlan(depth)) {
    for (let b = 1; b <= count; b++) {
      blocks.push(`${stage}_block${b}`);
    }
  }
  return blocks;
}

/**
 * Maps layers to blocks. Blocks are single residual blocks rather than the
 * four stages, because ResNet152V2's conv4 alone has 36 blocks: unfreezing by
 * stage would jump from 3 to 39 blocks. post_bn and post_relu belong to the
 * last residual block, because on their own they would form a block without
 * trainable weights.
 */
function resNetV2BlockOf(depth: ResNetV2Depth): (layer: string) => string | undefined {
  const plan = stagePlan(depth);
  const lastBlock = `conv5_block${(plan[3] as StagePlan).blocks}`;
  const poolBlocks = new Map<string, string>();
  plan
    .filter((p) => p.lastStride > 1)
    .forEach((p, i) => poolBlocks.set(shortcutPoolName(i), `${p.stage}_block${p.blocks}`));

  return (layer) => {
    if (layer.startsWith('conv1_') || layer.startsWith('pool1_')) {
      return 'stem';
    }
    const match = /^(conv[2-5]_block\d+)_/.exec(layer);
    if (match) {
      return match[1];
    }
    if (layer === 'post_bn' || layer === 'post_relu') {
      return lastBlock;
    }
    const pooled = poolBlocks.get(layer);
    if (pooled !== undefined) {
      return pooled;
    }
    return layer === 'avg_pool' || layer === 'predictions' ? 'top' : undefined;
  };
}

const KERAS_RESNET_URL = 'https://storage.googleapis.com/tensorflow/keras-applications/resnet/';

/** MD5 checksums from WEIGHTS_HASHES in resnet.py (Keras 3.15), with top then without. */
const KERAS_RESNET_V2_MD5: Record<ResNetV2Depth, [string, string]> = {
  50: ['3ef43a0b657b3be2300d5770ece849e0', 'fac2f116257151a9d068a22e544a4917'],
  101: ['6343647c601c52e1368623803854d971', 'c0ed64b8031c3730f411d2eb4eea35b5'],
  152: ['a49b44d1979771252814e80f8ec446f9', 'ed17cf2e0169df9d443503ef94b23b33'],
};

/** Parameters of keras.applications.ResNet*V2(include_top=False) at 224x224 (Keras 3.15). */
const KERAS_RESNET_V2_PARAMS_NO_TOP: Record<ResNetV2Depth, number> = {
  50: 23_564_800,
  101: 42_626_560,
  152: 58_331_648,
};

export function resNetV2Spec(depth: ResNetV2Depth): BackboneSpec {
  const [withTopMd5, noTopMd5] = KERAS_RESNET_V2_MD5[depth];
  const file = `resnet${depth}v2_weights_tf_dim_ordering_tf_kernels`;
  return {
    name: `ResNet${depth}V2`,
    description: `Keras ResNet${depth}V2: pre-activation bottleneck residual blocks ${STAGE_BLOCKS[depth].join('-')}`,
    defaultInputSize: 224,
    minInputSize: 32,
    preprocessing: 'tf',
    lastConvLayer: 'post_relu',
    blocks: resNetV2Blocks(depth),
    blockOf: resNetV2BlockOf(depth),
    kerasParamsNoTop: KERAS_RESNET_V2_PARAMS_NO_TOP[depth],
    weights: {
      kerasNoTop: { url: `${KERAS_RESNET_URL}${file}_notop.h5`, md5: noTopMd5 },
      kerasWithTop: { url: `${KERAS_RESNET_URL}${file}.h5`, md5: withTopMd5 },
    },
    build: (input, options) => buildResNetV2(input, depth, options),
  };
}
