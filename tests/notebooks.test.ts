/**
 * The notebooks and their runner: the committed notebooks match their
 * generator, and scripts/notebooks.py executes notebooks on the fer-tslab
 * kernel, renders HTML with the plotly figures, and fails on cell errors,
 * TypeScript type errors included. Needs `npm run setup` (JupyterLab tooling
 * and the kernel in .venv, notebooks/node_modules/fer-toolkit, dist/) and
 * Chromium for the PNG export.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import * as path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { registerBuiltins } from '../lib/models/catalog';
import { getConfiguration, listConfigurations } from '../lib/models/registry';

const ROOT = path.resolve(__dirname, '..');
const PYTHON = path.join(ROOT, '.venv', 'bin', 'python');
const generator = createRequire(path.join(ROOT, 'package.json'))('./scripts/make-notebooks.js') as { STUDY_CONFIGURATIONS: string[]; notebooks: () => Array<{ file: string }> };

function notebook(cells: string[]): string {
  return JSON.stringify({
    cells: cells.map((source, i) => ({ cell_type: 'code', id: `c${i}`, metadata: {}, execution_count: null, outputs: [], source })),
    metadata: { kernelspec: { name: 'fer-tslab', display_name: 'TypeScript (fer-toolkit)', language: 'typescript' } },
    nbformat: 4,
    nbformat_minor: 5,
  });
}

interface ExecutedNotebook {
  cells: Array<{ execution_count: number | null; outputs: Array<{ output_type: string; data?: Record<string, unknown>; text?: string | string[] }> }>;
}

function readNotebook(file: string): ExecutedNotebook {
  return JSON.parse(fs.readFileSync(file, 'utf8')) as ExecutedNotebook;
}

describe('notebook files', () => {
  it('match the generator templates', () => {
    const result = spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'make-notebooks.js'), '--check'], { encoding: 'utf8' });
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
  });

  it('cover every study configuration', () => {
    registerBuiltins();
    const registered = new Set(listConfigurations().map((c) => c.name));
    expect(generator.STUDY_CONFIGURATIONS).toHaveLength(12);
    for (const name of generator.STUDY_CONFIGURATIONS) {
      expect(registered.has(name), name).toBe(true);
      expect(getConfiguration(name).name).toBe(name);
    }
    const files = generator.notebooks().map((n) => n.file);
    expect(files[0]).toBe('00-dataset.ipynb');
    expect(files.slice(-2)).toEqual(['13-comparison.ipynb', '14-explainability.ipynb']);
    expect(files).toHaveLength(15);
  });
});

describe('notebook code', () => {
  const dir = path.join(ROOT, 'notebooks', 'executed', `typecheck-${process.pid}`);
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  // tslab checks each cell with TypeScript 5.0 and without strict mode; this
  // checks the code of each notebook, its cells in order as one module, with
  // the project's compiler in strict mode. The folder sits inside notebooks/
  // so that 'fer-toolkit' resolves as it does in the kernel.
  it('passes a strict type check', () => {
    fs.mkdirSync(dir, { recursive: true });
    const files = generator.notebooks().map(({ file }) => {
      const saved = JSON.parse(fs.readFileSync(path.join(ROOT, 'notebooks', file), 'utf8')) as { cells: Array<{ cell_type: string; source: string[] }> };
      const code = saved.cells.filter((cell) => cell.cell_type === 'code').map((cell) => cell.source.join(''));
      const target = path.join(dir, file.replace(/\.ipynb$/, '.ts'));
      fs.writeFileSync(target, `${code.join('\n')}\nexport {};\n`);
      return target;
    });
    const tsc = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
    const options = ['--noEmit', '--strict', '--module', 'es2022', '--target', 'es2022', '--moduleResolution', 'node10', '--esModuleInterop', '--skipLibCheck', '--types', 'node'];
    const result = spawnSync(process.execPath, [tsc, ...options, ...files], { cwd: dir, encoding: 'utf8' });
    expect(result.stdout).toBe('');
    expect(result.status).toBe(0);
  }, 120_000);
});

describe('notebook runner', () => {
  let sources: string;
  const outName = `test-${process.pid}`;
  const out = path.join(ROOT, 'notebooks', 'executed', outName);

  beforeAll(async () => {
    if (!fs.existsSync(PYTHON) || !fs.existsSync(path.join(ROOT, 'notebooks', 'node_modules', 'fer-toolkit', 'dist', 'index.js'))) {
      throw new Error('The notebook tooling is missing (.venv or notebooks/node_modules/fer-toolkit); run npm run setup.');
    }
    sources = await mkdtemp(path.join(tmpdir(), 'fer-notebooks-'));
  });

  afterAll(async () => {
    await rm(sources, { recursive: true, force: true });
    await rm(out, { recursive: true, force: true });
  });

  function run(files: string[]) {
    return spawnSync(PYTHON, [path.join(ROOT, 'scripts', 'notebooks.py'), '--out', out, '--timeout', '240', ...files], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 600_000,
    });
  }

  it('executes a notebook and renders plotly HTML', () => {
    const file = path.join(sources, 'figure.ipynb');
    fs.writeFileSync(
      file,
      notebook([
        "import * as path from 'node:path';\nimport * as fer from 'fer-toolkit';\nconst png = path.join(process.env.FER_IMAGES_DIR, 'cm.png');",
        "await fer.showFigure(fer.confusionMatrixFigure([[3, 1], [0, 4]], ['anger', 'fear']), { png: png, width: 500, height: 400 });\nfer.showTable([{ class: 'anger', images: 4 }]);",
      ]),
    );
    const result = run([file]);
    expect(result.stderr).toContain('figure.ipynb: ok');
    expect(result.stdout.trim().split('\n').pop()).toBe('notebooks: 1 passed, 0 failed');
    expect(result.status).toBe(0);

    const executed = readNotebook(path.join(out, 'figure.ipynb'));
    const outputs = executed.cells[1]?.outputs ?? [];
    const figure = outputs.find((o) => o.data?.['application/vnd.plotly.v1+json'] !== undefined);
    // nbformat may store a text output as a list of lines.
    expect([figure?.data?.['text/markdown']].flat().join('')).toBe('![Confusion matrix](images/cm.png)');
    expect(outputs.some((o) => String(o.data?.['text/html'] ?? '').includes('<td>anger</td>'))).toBe(true);
    expect(fs.existsSync(path.join(out, 'images', 'cm.png'))).toBe(true);

    const html = fs.readFileSync(path.join(out, 'figure.html'), 'utf8');
    expect(html).toContain('plotly.js v');
    expect(html).toContain('Plotly.newPlot(target');
    expect(html).not.toContain('require.min.js');
  }, 600_000);

  it('fails on type and runtime errors', () => {
    const typeError = path.join(sources, 'type_error.ipynb');
    fs.writeFileSync(typeError, notebook(["const count: number = 'seven';", "console.log('not reached');"]));
    const runtimeError = path.join(sources, 'runtime_error.ipynb');
    fs.writeFileSync(runtimeError, notebook(["import * as fer from 'fer-toolkit';\nfer.parseScale('huge');"]));

    const result = run([typeError, runtimeError]);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain('type_error.ipynb: FAILED');
    expect(result.stderr).toContain("Type 'string' is not assignable to type 'number'");
    expect(result.stderr).toContain('runtime_error.ipynb: FAILED');
    expect(result.stderr).toContain('Invalid scale "huge"');
    expect(result.stdout.trim().split('\n').pop()).toBe('notebooks: 0 passed, 2 failed');
    // The failed notebook is written with its error, and the cell after the error never ran.
    const executed = readNotebook(path.join(out, 'type_error.ipynb'));
    expect(executed.cells[1]?.execution_count).toBeNull();
  }, 600_000);
});
