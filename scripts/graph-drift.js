#!/usr/bin/env node
/**
 * How far the graph training step (lib/graph/train_step.ts) drifts from the
 * eager one over many steps, against how far the eager step drifts from
 * itself when its input changes by about one float ulp. Three copies of
 * MobileNet-0.25 at 96 px (ImageNet weights, top 8 blocks unfrozen) take
 * 30 Adam steps (1e-4, batch 32) over 5 fixed random batches, without
 * dropout. One takes eager steps, one eager steps on x * (1 + 1.2e-7), one
 * graph steps. It prints the loss differences and the largest weight
 * difference at the end.
 *
 * Usage: npm run build && node scripts/graph-drift.js
 */
const tf = require('@tensorflow/tfjs');
const { initBackend } = require('../dist/backend');
const { createModel, setTrainableBlocks, trainableVariables } = require('../dist/models/factory');
const { GroupedAdamOptimizer } = require('../dist/perf/adam');
const { GraphTrainStep } = require('../dist/graph/train_step');
const { setLogLevel } = require('../dist/util/log');
(async () => {
  setLogLevel('warn');
  await initBackend('node');
  const size = 96, n = 32, steps = 30;
  const mk = async () => { const f = await createModel('MobileNet-0.25', { inputSize: size, seed: 3 }); setTrainableBlocks(f, 8); return f; };
  const A = await mk(), B = await mk(), C = await mk();
  const xs = Array.from({ length: 5 }, (_, i) => tf.randomUniform([n, size, size, 3], -1, 1, 'float32', 100 + i));
  const ys = Array.from({ length: 5 }, (_, i) => tf.oneHot(tf.tensor1d(Array.from({ length: n }, (_, j) => (j * 7 + i * 3) % 7), 'int32'), 7).toFloat());
  const ce = (oh, p) => tf.mean(tf.neg(tf.sum(tf.mul(oh, tf.log(tf.clipByValue(p, 1e-7, 1 - 1e-7))), 1)));
  const eagerStep = (fer, opt, vars, x, y) => { const l = opt.minimize(() => ce(y, fer.model.apply(x, { training: false })), true, vars); const v = l.dataSync()[0]; l.dispose(); return v; };
  const va = trainableVariables(A), vb = trainableVariables(B), vc = trainableVariables(C);
  const oa = new GroupedAdamOptimizer(1e-4), ob = new GroupedAdamOptimizer(1e-4);
  const g = await GraphTrainStep.create(C.model, vc, 1e-4, []);
  const ones = g.masks.map((m) => tf.ones([n, ...m.shape]));
  for (let s = 0; s < steps; s++) {
    const x = xs[s % 5], y = ys[s % 5];
    // training: false in eager means no dropout (and no folding, which does not change results); the graph gets masks of ones.
    const la = eagerStep(A, oa, va, x, y); const xp = tf.mul(x, 1 + 1.2e-7); const lb = eagerStep(B, ob, vb, xp, y); xp.dispose();
    const o = g.run(x, tf.div(y, n), ones); const lc = o.loss.dataSync()[0]; tf.dispose([o.loss, o.predicted]);
    if (s % 5 === 4 || s < 3) console.log(`step ${s + 1}: eager ${la.toFixed(6)} | perturbed eager - eager ${(lb - la).toExponential(2)} | graph - eager ${(lc - la).toExponential(2)}`);
  }
  g.syncToModel();
  const rel = (p, q) => Math.max(...p.map((v, i) => tf.tidy(() => tf.max(tf.abs(tf.sub(v, q[i]))).dataSync()[0])));
  console.log('max |w_perturbed - w_eager|', rel(vb, va).toExponential(2), ' max |w_graph - w_eager|', rel(vc, va).toExponential(2));
  await g.dispose();
})();
