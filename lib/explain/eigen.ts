/**
 * The first principal component of a feature map, for Eigen-CAM. tfjs has no
 * SVD, so the dominant eigenvector of the smaller Gram matrix is found with
 * the cyclic Jacobi method in float64.
 */

export interface SymmetricEigen {
  value: number;
  /** Unit eigenvector of the largest eigenvalue. */
  vector: Float64Array;
}

/** Largest off-diagonal magnitude below which the Jacobi sweeps stop, relative to the matrix norm. */
const JACOBI_TOLERANCE = 1e-14;
const MAX_SWEEPS = 100;

/**
 * Computes the largest eigenvalue of a symmetric n x n matrix (row-major) and
 * its eigenvector. The input is not modified. Cost: O(n^3) per sweep, with
 * typically 6 to 10 sweeps.
 */
export function dominantEigen(matrix: Float64Array, n: number): SymmetricEigen {
  if (matrix.length !== n * n) {
    throw new RangeError(`Expected an ${n}x${n} matrix (${n * n} values), got ${matrix.length} values.`);
  }
  const a = Float64Array.from(matrix);
  const v = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    v[i * n + i] = 1;
  }
  let norm = 0;
  for (let i = 0; i < a.length; i++) {
    norm += (a[i] as number) ** 2;
  }
  const threshold = JACOBI_TOLERANCE * Math.sqrt(norm);

  for (let sweep = 0; sweep < MAX_SWEEPS; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        off = Math.max(off, Math.abs(a[p * n + q] as number));
      }
    }
    if (off <= threshold) {
      break;
    }
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q] as number;
        if (Math.abs(apq) <= threshold) {
          continue;
        }
        const app = a[p * n + p] as number;
        const aqq = a[q * n + q] as number;
        // Rotation angle that zeroes a[p][q] (Golub and Van Loan, Algorithm 8.4.1).
        const theta = (aqq - app) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          const akp = a[k * n + p] as number;
          const akq = a[k * n + q] as number;
          a[k * n + p] = c * akp - s * akq;
          a[k * n + q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = a[p * n + k] as number;
          const aqk = a[q * n + k] as number;
          a[p * n + k] = c * apk - s * aqk;
          a[q * n + k] = s * apk + c * aqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = v[k * n + p] as number;
          const vkq = v[k * n + q] as number;
          v[k * n + p] = c * vkp - s * vkq;
          v[k * n + q] = s * vkp + c * vkq;
        }
      }
    }
  }

  let best = 0;
  for (let i = 1; i < n; i++) {
    if ((a[i * n + i] as number) > (a[best * n + best] as number)) {
      best = i;
    }
  }
  const vector = new Float64Array(n);
  for (let k = 0; k < n; k++) {
    vector[k] = v[k * n + best] as number;
  }
  return { value: a[best * n + best] as number, vector };
}

/**
 * Projects a feature map on its first principal component, as Eigen-CAM
 * (Muhammad and Yeasin, 2020) does in pytorch-grad-cam's get_2d_projection.
 * The [positions, channels] matrix is centred per channel and multiplied by
 * its first right singular vector, which gives one value per position.
 *
 * The singular vector's sign is arbitrary, so the projection is oriented to
 * correlate positively with the channel sum of the uncentred activations;
 * otherwise the map could come out inverted. `activations` is one image's
 * [positions * channels] row-major values.
 */
export function firstComponentProjection(activations: Float32Array, positions: number, channels: number): Float64Array {
  if (activations.length !== positions * channels) {
    throw new RangeError(`Expected ${positions} x ${channels} activations, got ${activations.length} values.`);
  }
  const centred = new Float64Array(positions * channels);
  for (let c = 0; c < channels; c++) {
    let mean = 0;
    for (let p = 0; p < positions; p++) {
      mean += activations[p * channels + c] as number;
    }
    mean /= positions;
    for (let p = 0; p < positions; p++) {
      centred[p * channels + c] = (activations[p * channels + c] as number) - mean;
    }
  }

  const projection = new Float64Array(positions);
  if (positions <= channels) {
    // X X^T (positions x positions): its top eigenvector u gives X v1 = sqrt(lambda) u.
    const gram = new Float64Array(positions * positions);
    for (let i = 0; i < positions; i++) {
      for (let j = i; j < positions; j++) {
        let sum = 0;
        for (let c = 0; c < channels; c++) {
          sum += (centred[i * channels + c] as number) * (centred[j * channels + c] as number);
        }
        gram[i * positions + j] = sum;
        gram[j * positions + i] = sum;
      }
    }
    const { value, vector } = dominantEigen(gram, positions);
    const scale = Math.sqrt(Math.max(0, value));
    for (let p = 0; p < positions; p++) {
      projection[p] = scale * (vector[p] as number);
    }
  } else {
    // X^T X (channels x channels): its top eigenvector is v1 itself.
    const cov = new Float64Array(channels * channels);
    for (let i = 0; i < channels; i++) {
      for (let j = i; j < channels; j++) {
        let sum = 0;
        for (let p = 0; p < positions; p++) {
          sum += (centred[p * channels + i] as number) * (centred[p * channels + j] as number);
        }
        cov[i * channels + j] = sum;
        cov[j * channels + i] = sum;
      }
    }
    const { vector } = dominantEigen(cov, channels);
    for (let p = 0; p < positions; p++) {
      let sum = 0;
      for (let c = 0; c < channels; c++) {
        sum += (centred[p * channels + c] as number) * (vector[c] as number);
      }
      projection[p] = sum;
    }
  }

  let alignment = 0;
  for (let p = 0; p < positions; p++) {
    let total = 0;
    for (let c = 0; c < channels; c++) {
      total += activations[p * channels + c] as number;
    }
    alignment += (projection[p] as number) * total;
  }
  if (alignment < 0) {
    for (let p = 0; p < positions; p++) {
      projection[p] = -(projection[p] as number);
    }
  }
  return projection;
}
