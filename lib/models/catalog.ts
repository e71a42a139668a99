/**
 * The registered backbones and configurations. Importing this module fills
 * the registry; lib/index.ts does so for every user of the library.
 */
import { convNeXtSpec } from './backbones/convnext';
import { efficientNetSpec } from './backbones/efficientnet';
import { mobileNetSpec, mobileNetV2Spec } from './backbones/mobilenet';
import { resNetV2Spec } from './backbones/resnet_v2';
import { vggSpec } from './backbones/vgg';
import { listConfigurations, registerBackbone, registerConfiguration } from './registry';
import type { ModelConfiguration } from './types';

/** Configuration that `fer train` uses without --model. */
export const DEFAULT_MODEL = 'FER2013-MobileNet';

let registered = false;

/** Study protocol: Adam 1e-3 for the head, 1e-4 for fine-tuning, 30 epochs each. */
export function studyConfiguration(
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

  // Parameter counts of Keras's MobileNet(alpha, include_top=False) at 224x224 (Keras 3.15).
  registerBackbone({ ...mobileNetSpec(0.25, 'mobilenet_v1_0.25_224'), kerasParamsNoTop: 218_544 });
  registerBackbone({ ...mobileNetSpec(0.5), kerasParamsNoTop: 829_536 });
  registerBackbone({ ...mobileNetSpec(0.75, 'mobilenet_v1_0.75_224'), kerasParamsNoTop: 1_832_976 });
  registerBackbone({ ...mobileNetSpec(1), kerasParamsNoTop: 3_228_864 });
  registerBackbone({ ...mobileNetV2Spec(0.35, 'mobilenet_v2_0.35_224_teachable'), kerasParamsNoTop: 410_208 });
  registerBackbone({ ...mobileNetV2Spec(1), kerasParamsNoTop: 2_257_984 });
  registerBackbone(vggSpec(16));
  registerBackbone(vggSpec(19));
  registerBackbone(resNetV2Spec(50));
  registerBackbone(resNetV2Spec(101));
  registerBackbone(resNetV2Spec(152));
  for (const variant of ['B0', 'B1', 'B2', 'B3', 'B4', 'B5', 'B6', 'B7'] as const) {
    registerBackbone(efficientNetSpec(variant));
  }
  for (const variant of ['Tiny', 'Small', 'Base'] as const) {
    registerBackbone(convNeXtSpec(variant));
  }

  for (const backbone of ['MobileNet-0.25', 'MobileNet-0.75', 'MobileNet', 'MobileNetV2-0.35', 'MobileNetV2']) {
    registerConfiguration(studyConfiguration(backbone, backbone));
  }

  // The main FER-2013 job sized for a 2-core CPU: 48x48 faces upscaled to 96x96 (input 48 learned far
  // slower in trials), the top 8 of 14 MobileNet blocks fine-tuned (1.5x the throughput of all 14 with
  // similar validation accuracy), and a time budget set on the command line.
  registerConfiguration(
    studyConfiguration('FER2013-MobileNet', 'MobileNet-0.25', {
      description: 'MobileNet-0.25 at 96x96 for FER-2013 on a CPU: head [512], dropout 0.5, top 8 blocks fine-tuned',
      inputSize: 96,
      batchSize: 64,
      phase1: { learningRate: 1e-3, epochs: 1 },
      phase2: { learningRate: 1e-4, epochs: 30, unfreezeBlocks: 8 },
    }),
  );

  // The study fine-tuned VGG at 1e-5 and trained with batch sizes between 128
  // and 512: VGG19 at 128, ResNet50V2 and ResNet101V2 at 512.
  // NOTE: the study does not report VGG16's and ResNet152V2's batch sizes; these follow their family.
  const vggPhase2 = { learningRate: 1e-5, epochs: 30, unfreezeBlocks: 'all' as const };
  registerConfiguration(studyConfiguration('VGG16', 'VGG16', { dense: [512], batchSize: 128, phase2: vggPhase2 }));
  registerConfiguration(studyConfiguration('VGG19', 'VGG19', { dense: [512], batchSize: 128, phase2: vggPhase2 }));
  registerConfiguration(studyConfiguration('ResNet50V2', 'ResNet50V2', { batchSize: 512 }));
  registerConfiguration(studyConfiguration('ResNet101V2', 'ResNet101V2', { batchSize: 512 }));
  registerConfiguration(studyConfiguration('ResNet152V2', 'ResNet152V2', { batchSize: 512 }));

  // The study trained EfficientNet and ConvNeXt at 224x224, below EfficientNet's
  // native sizes (260 for B2 up to 456 for B5), and EfficientNetB5 with batch size 128.
  // NOTE: the study does not report the other batch sizes; they keep the default of 32.
  for (const backbone of ['EfficientNetB2', 'EfficientNetB3', 'EfficientNetB4']) {
    registerConfiguration(studyConfiguration(backbone, backbone));
  }
  registerConfiguration(studyConfiguration('EfficientNetB5', 'EfficientNetB5', { batchSize: 128 }));
  registerConfiguration(studyConfiguration('EfficientNetB2 Modified', 'EfficientNetB2', { dense: [1024, 1024, 512] }));
  registerConfiguration(studyConfiguration('EfficientNetB3 Modified', 'EfficientNetB3', { dense: [1024, 512, 256] }));
  registerConfiguration(studyConfiguration('ConvNeXtBase', 'ConvNeXtBase'));
}

export function configurationNames(): string[] {
  registerBuiltins();
  return listConfigurations().map((c) => c.name);
}
