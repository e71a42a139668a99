#!/usr/bin/env node
/**
 * Times `fer predict`'s steps on face-api's demo group photos: decoding,
 * face detection and classification, one image at a time (no overlap between
 * images), median of several repetitions after one warm-up. The CPU column is
 * the process's user + system CPU time for detection and classification,
 * summed over threads. On a machine shared with other jobs it varies less
 * than wall time does.
 *
 * Usage: npm run build && node scripts/bench-predict.js RUN_DIR [REPEATS]
 *
 * Images: demo/sample1.jpg (1920x1280, 3 faces), demo/sample6.jpg
 * (1920x1537, 4 faces), and sample6 scaled to 6000 pixels wide, written to a
 * temporary folder.
 */
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const sharp = require('sharp');

const { initBackend } = require('../dist/backend');
const { Predictor } = require('../dist/predict/predictor');
const { loadRun } = require('../dist/train/load_run');

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

async function main() {
  const [runDir, repeatsArg] = process.argv.slice(2);
  if (runDir === undefined) {
    process.stderr.write('usage: node scripts/bench-predict.js RUN_DIR [REPEATS]\n');
    process.exit(2);
  }
  const repeats = Number(repeatsArg ?? 5);
  const demo = path.join(path.dirname(require.resolve('@vladmandic/face-api/package.json')), 'demo');
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-predict-'));
  const large = path.join(work, 'sample6-6000.jpg');
  await sharp(path.join(demo, 'sample6.jpg')).resize(6000).jpeg({ quality: 90 }).toFile(large);
  const images = [
    ['sample1 1920x1280', path.join(demo, 'sample1.jpg')],
    ['sample6 1920x1537', path.join(demo, 'sample6.jpg')],
    ['sample6 6000x4803', large],
  ];

  const backend = await initBackend();
  const run = await loadRun(runDir);
  process.stdout.write(
    `model ${run.options.configuration.name} (input ${run.fer.inputSize}px), backend ${backend.name}, ` +
      `${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? 'unknown'}), load average ${os.loadavg()[0].toFixed(1)}, ${repeats} repeats\n\n`,
  );
  process.stdout.write('| image | detector | faces | decode ms | detect ms | classify ms | detect + classify ms | detect + classify CPU ms |\n');
  process.stdout.write('| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n');
  for (const detector of ['ssd', 'tiny']) {
    const predictor = await Predictor.create(run, { detector });
    for (const [label, file] of images) {
      const decode = [];
      const detect = [];
      const classify = [];
      const cpu = [];
      let faces = 0;
      for (let i = 0; i <= repeats; i++) {
        const start = performance.now();
        const image = await predictor.decode(file);
        const decodeMs = performance.now() - start;
        const cpuStart = process.cpuUsage();
        const prediction = await predictor.predict(image);
        const cpuUsed = process.cpuUsage(cpuStart);
        faces = prediction.result.faces.length;
        if (i > 0) {
          decode.push(decodeMs);
          detect.push(prediction.detectMs);
          classify.push(prediction.classifyMs);
          cpu.push((cpuUsed.user + cpuUsed.system) / 1000);
        }
      }
      const both = detect.map((d, i) => d + classify[i]);
      process.stdout.write(
        `| ${label} | ${detector} | ${faces} | ${median(decode).toFixed(0)} | ${median(detect).toFixed(0)} | ` +
          `${median(classify).toFixed(0)} | ${median(both).toFixed(0)} | ${median(cpu).toFixed(0)} |\n`,
      );
    }
  }
  fs.rmSync(work, { recursive: true, force: true });
}

main().then(
  () => process.exit(0),
  (error) => {
    process.stderr.write(`error: ${error.message}\n`);
    process.exit(1);
  },
);
