/**
 * Access to the networks that ship in @vladmandic/face-api 1.7.15: the SSD
 * MobileNet v1 and Tiny Face Detector face detectors and FaceExpressionNet.
 *
 * The package has one build per tfjs flavour. `face-api.node.js` requires
 * @tensorflow/tfjs-node, so it fails to load where the native binding is
 * missing, and `face-api.node-gpu.js` requires tfjs-node-gpu. This module
 * loads `face-api.node-wasm.js`, which requires only @tensorflow/tfjs and
 * @tensorflow/tfjs-backend-wasm from the host. Both are dependencies of this
 * project at 4.22.0, the version face-api 1.7.15 is built against, so face-api
 * runs on the same tfjs engine and on whatever backend initBackend selected
 * (tfjs-node here). Loading it registers the wasm backend but does not switch
 * to it.
 *
 * Weights are read from the package's model/ folder with fs, so nothing is
 * fetched over the network.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

import * as tf from '@tensorflow/tfjs';

/** A box in pixel coordinates of the image it was found in. */
export interface Box {
  x: number;
  y: number;
  width: number;
  height: number;
}

interface FaceApiDetection {
  score: number;
  box: Box;
}

interface FaceApiNet {
  readonly isLoaded: boolean;
  loadFromDisk(folder: string): Promise<void>;
}

interface SsdMobilenetv1 extends FaceApiNet {
  locateFaces(input: tf.Tensor3D, options: { minConfidence: number; maxResults: number }): Promise<FaceApiDetection[]>;
}

interface TinyFaceDetector extends FaceApiNet {
  locateFaces(input: tf.Tensor3D, options: { inputSize: number; scoreThreshold: number }): Promise<FaceApiDetection[]>;
}

interface FaceExpressionNet extends FaceApiNet {
  /** Softmax output [n, 7] in FACEAPI_EXPRESSION_LABELS order; each image is padded to a square and resized to 112x112. */
  forward(input: tf.Tensor3D[]): Promise<tf.Tensor2D>;
}

interface FaceApiModule {
  nets: {
    ssdMobilenetv1: SsdMobilenetv1;
    tinyFaceDetector: TinyFaceDetector;
    faceExpressionNet: FaceExpressionNet;
  };
  tf: { engine(): unknown };
}

/** FaceExpressionNet's output order (FACE_EXPRESSION_LABELS in face-api's src/faceExpressionNet/FaceExpressions.ts). */
export const FACEAPI_EXPRESSION_LABELS = ['neutral', 'happy', 'sad', 'angry', 'fearful', 'disgusted', 'surprised'] as const;

/** Input side of FaceExpressionNet in pixels. */
export const FACEAPI_EXPRESSION_INPUT_SIZE = 112;

const PACKAGE = '@vladmandic/face-api';

let loaded: FaceApiModule | undefined;

/** Loads face-api once and checks that it shares this process's tfjs engine. */
export function faceApi(): FaceApiModule {
  if (loaded !== undefined) {
    return loaded;
  }
  let module: FaceApiModule;
  try {
    module = require(`${PACKAGE}/dist/face-api.node-wasm.js`) as FaceApiModule;
  } catch (error) {
    throw new Error(`Cannot load ${PACKAGE}: ${(error as Error).message}. Install it with "npm install".`, { cause: error });
  }
  if (module.tf.engine() !== tf.engine()) {
    // Two tfjs copies would keep separate backends and tensors that cannot be mixed.
    throw new Error(
      `${PACKAGE} loaded a different copy of @tensorflow/tfjs than this project. ` +
        `Run "npm ls @tensorflow/tfjs-core" and remove the duplicate so that both use version ${tf.version.tfjs}.`,
    );
  }
  loaded = module;
  return module;
}

/** Locates the model/ folder inside the installed face-api package. */
export function defaultFaceApiModelDir(): string {
  return path.join(path.dirname(require.resolve(`${PACKAGE}/package.json`)), 'model');
}

/** File name prefixes of the weight manifests in face-api's model/ folder. */
const MANIFESTS = {
  ssdMobilenetv1: 'ssd_mobilenetv1_model',
  tinyFaceDetector: 'tiny_face_detector_model',
  faceExpressionNet: 'face_expression_model',
} as const;

/** Loads one of face-api's networks from `modelDir` (default: the package's model/ folder), once per process. */
export async function loadFaceApiNet<K extends keyof FaceApiModule['nets']>(name: K, modelDir?: string): Promise<FaceApiModule['nets'][K]> {
  const net = faceApi().nets[name];
  if (net.isLoaded) {
    return net;
  }
  const dir = path.resolve(modelDir ?? defaultFaceApiModelDir());
  const manifest = path.join(dir, `${MANIFESTS[name]}-weights_manifest.json`);
  if (!fs.existsSync(manifest)) {
    throw new Error(`face-api weights not found: ${manifest}. Reinstall ${PACKAGE} or pass the folder that holds its model files.`);
  }
  await net.loadFromDisk(dir);
  return net;
}
