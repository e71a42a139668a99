/** Types of the model registry: backbones, full configurations and their options. */
import type * as tf from '@tensorflow/tfjs';

/**
 * Keras Applications' input conventions, applied to RGB pixels in [0, 255]:
 * - 'tf': x / 127.5 - 1 (MobileNet, MobileNetV2, ResNetV2).
 * - 'caffe': RGB to BGR, then subtract the ImageNet channel means (VGG, ResNet v1).
 * - 'torch': x / 255, then subtract mean and divide by std per channel (DenseNet).
 * - 'none': the model rescales internally (EfficientNet, ConvNeXt).
 */
export type PreprocessingMode = 'tf' | 'caffe' | 'torch' | 'none';

export interface BuiltBackbone {
  /**
   * The feature map that Keras's include_top=False model outputs, where the
   * head's global pooling attaches. It need not be the output of the spec's
   * lastConvLayer: VGG's is block5_pool, after its last convolution.
   */
  features: tf.SymbolicTensor;
  /** ImageNet class probabilities, only when built with includeTop. */
  top?: tf.SymbolicTensor;
}

export interface BackboneBuildOptions {
  /** Adds Keras's ImageNet classification top (1000 classes). */
  includeTop?: boolean;
}

/**
 * A weight file that Keras Applications publishes, with the checksum that
 * Keras's get_file verifies: SHA-256 for some families (ConvNeXt), MD5 for
 * older ones (VGG, ResNet, EfficientNet). Neither is set where Keras checks none.
 */
export interface KerasWeightFile {
  url: string;
  sha256?: string;
  md5?: string;
}

/** Where ImageNet weights for a backbone come from. */
export interface WeightSources {
  /**
   * Folder name of a TensorFlow.js layers model with these Keras layer names,
   * looked up in the weights directory (--weights-dir, FER_WEIGHTS_DIR, or data/weights).
   */
  tfjsFolder?: string;
  /** Keras's published HDF5 file without the top. */
  kerasNoTop?: KerasWeightFile;
  /** Keras's published HDF5 file with the ImageNet top. */
  kerasWithTop?: KerasWeightFile;
}

export interface BackboneSpec {
  /** Registry name, e.g. "MobileNet-0.25" or "EfficientNetB2". */
  name: string;
  description: string;
  /** Input size of the published ImageNet weights. */
  defaultInputSize: number;
  /** Smallest input size the architecture accepts. */
  minInputSize: number;
  preprocessing: PreprocessingMode;
  /** Name of the layer whose output is the last convolutional feature map. */
  lastConvLayer: string;
  /** Block names from input to output; fine-tuning unfreezes the last N. */
  blocks: readonly string[];
  /** Block of a layer, or undefined for layers outside all blocks (the input). */
  blockOf(layerName: string): string | undefined;
  /** Parameters of Keras's model without the top at the default size, for tests. */
  kerasParamsNoTop?: number;
  weights: WeightSources;
  build(input: tf.SymbolicTensor, options?: BackboneBuildOptions): BuiltBackbone;
}

export interface PhaseSettings {
  learningRate: number;
  /** Maximum epochs; early stopping may end the phase sooner. */
  epochs: number;
}

/** A named training configuration: backbone, head and protocol. */
export interface ModelConfiguration {
  name: string;
  description: string;
  backbone: string;
  /** Units of the dense ReLU layers between pooling and the softmax. */
  dense: number[];
  /** Dropout rate after the last dense layer. */
  dropout: number;
  inputSize: number;
  batchSize: number;
  phase1: PhaseSettings;
  phase2: PhaseSettings & {
    /** Number of backbone blocks to unfreeze, counted from the top, or 'all'. */
    unfreezeBlocks: number | 'all';
  };
}
