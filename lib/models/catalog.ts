/**
 * The registered backbones and configurations. Importing this module fills
 * the registry; lib/index.ts does so for every user of the library.
 */
import { mobileNetSpec, mobileNetV2Spec } from './backbones/mobilenet';
import { listConfigurations, registerBackbone, registerConfiguration } from './registry';
import type { ModelConfiguration } from './types';

/** Configuration that `fer train` uses without --model. */
export const DEFAULT_MODEL = 'MobileNet-0.25';

let registered = false;

/** Study protocol: Adam 1e-3 for the head, 1e-4 for fine-tuning, 30 epochs each. */
function studyConfiguration(
  name: string,
  backbone: string,
  overrides: Partial<ModelConfiguration> = {},
): ModelConfiguration {
  return {
    name,
    description: `${backbone} with global average pooling, dense ReLU, dropout 0.5 and a 7-way softmax`,
    backbone,
    dense: [512],
    dropout: 0.5,
    inputSize: 224,
    batchSize: 32,
    phase1: { learningRate: 1e-3, epochs: 30 },
    phase2: { learningRate: 1e-4, epochs: 30, unfreezeBlocks: 'all' },
    ...overrides,
  };
}

export function registerBuiltins(): void {
  if (registered) {
    return;
  }
  registered = true;

  registerBackbone(mobileNetSpec(0.25, 'mobilenet_v1_0.25_224'));
  registerBackbone(mobileNetSpec(0.5));
  registerBackbone(mobileNetSpec(0.75, 'mobilenet_v1_0.75_224'));
  registerBackbone(mobileNetSpec(1));
  registerBackbone(mobileNetV2Spec(0.35, 'mobilenet_v2_0.35_224_teachable'));
  registerBackbone(mobileNetV2Spec(1));

  for (const backbone of ['MobileNet-0.25', 'MobileNet-0.75', 'MobileNet', 'MobileNetV2-0.35', 'MobileNetV2']) {
    registerConfiguration(studyConfiguration(backbone, backbone));
  }
}

export function configurationNames(): string[] {
  registerBuiltins();
  return listConfigurations().map((c) => c.name);
}
