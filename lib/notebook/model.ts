/** A compact model summary for notebooks: parameters per backbone block and what each training phase trains. */
import { setTrainableBlocks, type FerModel } from '../models/factory';
import type { TableRow } from './display';

export interface ModelSummary {
  /** One row per backbone block, then the head: layers, parameters, and whether phase 2 trains it. */
  rows: TableRow[];
  parameters: number;
  /** Parameters that phase 1 trains: the head. */
  trainablePhase1: number;
  /** Parameters that phase 2 trains: the head and the unfrozen blocks, batch-norm layers excepted. */
  trainablePhase2: number;
}

function trainableCount(fer: FerModel): number {
  return fer.model.trainableWeights.reduce((sum, weight) => sum + weight.shape.reduce((product: number, side) => product * (side ?? 1), 1), 0);
}

/**
 * Summarises `fer` block by block. Sets the model's trainable flags as the
 * two phases do (setTrainableBlocks) and leaves them as for phase 2.
 */
export function summarizeModel(fer: FerModel, unfreezeBlocks: number | 'all'): ModelSummary {
  setTrainableBlocks(fer, 0);
  const trainablePhase1 = trainableCount(fer);
  setTrainableBlocks(fer, unfreezeBlocks);
  const trainablePhase2 = trainableCount(fer);

  const open = new Set(unfreezeBlocks === 'all' ? fer.backbone.blocks : fer.backbone.blocks.slice(Math.max(0, fer.backbone.blocks.length - unfreezeBlocks)));
  const blocks = new Map<string, { layers: number; parameters: number }>();
  const head = { layers: 0, parameters: 0 };
  // Backbone layers that blockOf places in no block; fine-tuning never trains them.
  const outside = { layers: 0, parameters: 0 };
  const backboneLayers = new Set(fer.backboneLayers);
  for (const layer of fer.model.layers) {
    let entry: { layers: number; parameters: number };
    if (backboneLayers.has(layer.name)) {
      const block = fer.backbone.blockOf(layer.name);
      entry = block === undefined ? outside : (blocks.get(block) ?? { layers: 0, parameters: 0 });
      if (block !== undefined) {
        blocks.set(block, entry);
      }
    } else if (fer.headLayers.includes(layer.name)) {
      entry = head;
    } else {
      // The input layer, which has no weights.
      continue;
    }
    entry.layers++;
    entry.parameters += layer.countParams();
  }
  const rows: TableRow[] = fer.backbone.blocks
    .filter((block) => blocks.has(block))
    .map((block) => ({ part: block, layers: blocks.get(block)?.layers ?? 0, parameters: blocks.get(block)?.parameters ?? 0, 'phase 2 trains it': open.has(block) ? 'yes' : 'no' }));
  if (outside.layers > 0) {
    rows.push({ part: '(outside blocks)', layers: outside.layers, parameters: outside.parameters, 'phase 2 trains it': 'no' });
  }
  rows.push({ part: 'head', layers: head.layers, parameters: head.parameters, 'phase 2 trains it': 'yes (phase 1 too)' });
  return { rows, parameters: fer.model.countParams(), trainablePhase1, trainablePhase2 };
}
