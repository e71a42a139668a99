/** Parsers and validators of command-line option values. */
import { InvalidArgumentError } from 'commander';

import { ClassAliases } from '../classes';

export function parseInteger(value: string): number {
  const parsed = Number(value);
  if (!Number.isInteger(parsed)) {
    throw new InvalidArgumentError(`"${value}" is not an integer.`);
  }
  return parsed;
}

export function parsePositiveInteger(value: string): number {
  const parsed = parseInteger(value);
  if (parsed < 1) {
    throw new InvalidArgumentError(`"${value}" is not an integer >= 1.`);
  }
  return parsed;
}

export function parseNumber(value: string): number {
  const parsed = Number(value);
  if (!Number.isFinite(parsed)) {
    throw new InvalidArgumentError(`"${value}" is not a number.`);
  }
  return parsed;
}

export function parseIntegerList(value: string): number[] {
  return value.split(',').map((part) => parseInteger(part.trim()));
}

export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** Validates --class-alias pairs early so that a typo fails before any data is read. */
export function parseAliases(pairs: string[] | undefined): Record<string, string> {
  if (pairs === undefined || pairs.length === 0) {
    return {};
  }
  ClassAliases.fromPairs(pairs);
  return Object.fromEntries(pairs.map((pair) => [pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1)]));
}

