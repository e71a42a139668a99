/**
 * One registry of backbones and training configurations, looked up by name.
 *
 * A backbone is a pretrained feature extractor (MobileNet-0.25, VGG16, ...);
 * a configuration is a backbone plus head and training protocol, such as the
 * study's "EfficientNetB2 Modified". Names match case-insensitively and
 * ignore spaces, dashes and underscores.
 */
import type { BackboneSpec, ModelConfiguration } from './types';

const backbones = new Map<string, BackboneSpec>();
const configurations = new Map<string, ModelConfiguration>();

function key(name: string): string {
  return name.toLowerCase().replace(/[\s_-]+/g, '');
}

export function registerBackbone(spec: BackboneSpec): void {
  const k = key(spec.name);
  if (backbones.has(k)) {
    throw new Error(`Backbone "${spec.name}" is already registered.`);
  }
  backbones.set(k, spec);
}

export function registerConfiguration(config: ModelConfiguration): void {
  const k = key(config.name);
  if (configurations.has(k)) {
    throw new Error(`Configuration "${config.name}" is already registered.`);
  }
  if (!backbones.has(key(config.backbone))) {
    throw new Error(`Configuration "${config.name}" names unknown backbone "${config.backbone}".`);
  }
  configurations.set(k, config);
}

export function listBackbones(): BackboneSpec[] {
  return [...backbones.values()];
}

export function listConfigurations(): ModelConfiguration[] {
  return [...configurations.values()];
}

export function getBackbone(name: string): BackboneSpec {
  const spec = backbones.get(key(name));
  if (spec === undefined) {
    throw new Error(`Unknown backbone "${name}". Registered backbones: ${listBackbones().map((b) => b.name).join(', ')}.`);
  }
  return spec;
}

export function getConfiguration(name: string): ModelConfiguration {
  const config = configurations.get(key(name));
  if (config === undefined) {
    throw new Error(
      `Unknown model "${name}". Registered configurations: ${listConfigurations().map((c) => c.name).join(', ')}. ` +
        `Run "fer models" to list them with their backbones.`,
    );
  }
  return config;
}

export function hasBackbone(name: string): boolean {
  return backbones.has(key(name));
}

export function hasConfiguration(name: string): boolean {
  return configurations.has(key(name));
}
