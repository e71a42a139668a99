import { describe, expect, it } from 'vitest';

import {
  CANONICAL_CLASSES,
  ClassAliases,
  classIndex,
  NUM_CLASSES,
  toCanonicalClass,
  UnknownClassError,
  type EmotionClass,
} from '../lib/classes';

/** Returns the error thrown by `action`, failing the test when nothing is thrown. */
function thrownBy(action: () => unknown): Error {
  try {
    action();
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected the call to throw, but it returned normally');
}

describe('canonical classes', () => {
  it('order is fixed', () => {
    expect([...CANONICAL_CLASSES]).toEqual(['anger', 'disgust', 'fear', 'happiness', 'neutral', 'sadness', 'surprise']);
  });

  it('classIndex matches the order', () => {
    CANONICAL_CLASSES.forEach((cls, i) => {
      expect(classIndex(cls), cls).toBe(i);
    });
  });

  it('NUM_CLASSES is seven', () => {
    expect(NUM_CLASSES).toBe(7);
  });
});

describe('ClassAliases lookup', () => {
  const aliases = new ClassAliases();

  const FER_2013: Array<[string, EmotionClass]> = [
    ['angry', 'anger'],
    ['disgust', 'disgust'],
    ['fear', 'fear'],
    ['happy', 'happiness'],
    ['neutral', 'neutral'],
    ['sad', 'sadness'],
    ['surprise', 'surprise'],
  ];

  const STUDY: Array<[string, EmotionClass]> = [
    ['Anger', 'anger'],
    ['Disgust', 'disgust'],
    ['Fear', 'fear'],
    ['Happiness', 'happiness'],
    ['Neutral', 'neutral'],
    ['Sadness', 'sadness'],
    ['Surprise', 'surprise'],
  ];

  it('resolves FER-2013 folder names', () => {
    for (const [folder, cls] of FER_2013) {
      expect(aliases.lookup(folder), folder).toBe(cls);
    }
  });

  it('resolves study folder names', () => {
    for (const [folder, cls] of STUDY) {
      expect(aliases.lookup(folder), folder).toBe(cls);
    }
  });

  it('ignores letter case', () => {
    expect(aliases.lookup('HAPPY')).toBe('happiness');
    expect(aliases.lookup('sAdNeSs')).toBe('sadness');
    expect(aliases.lookup('Angry')).toBe('anger');
  });

  it('ignores spaces, dashes, underscores', () => {
    expect(aliases.lookup('sur_prised')).toBe('surprise');
    expect(aliases.lookup('Fear-ful')).toBe('fear');
    expect(aliases.lookup(' neutral ')).toBe('neutral');
    expect(aliases.lookup('Hap py')).toBe('happiness');
    expect(aliases.lookup('__disgusted--')).toBe('disgust');
  });

  it('returns undefined for unknown names', () => {
    expect(aliases.lookup('contempt')).toBeUndefined();
    expect(aliases.lookup('happy.')).toBeUndefined();
    expect(aliases.lookup('')).toBeUndefined();
  });

  it('resolve returns the class', () => {
    expect(aliases.resolve('Happiness', '/data/Train/Happiness')).toBe('happiness');
  });
});

describe('UnknownClassError', () => {
  const aliases = new ClassAliases();
  const error = thrownBy(() => aliases.resolve('Contempt', '/data/train/Contempt'));

  it('is thrown for unknown folders', () => {
    expect(error).toBeInstanceOf(UnknownClassError);
    expect(error.name).toBe('UnknownClassError');
  });

  it('carries folder and path', () => {
    const unknown = error as UnknownClassError;
    expect(unknown.folder).toBe('Contempt');
    expect(unknown.path).toBe('/data/train/Contempt');
  });

  it('message names folder and path', () => {
    expect(error.message).toContain('"Contempt"');
    expect(error.message).toContain('/data/train/Contempt');
  });

  it('message lists the known names', () => {
    for (const name of ['anger', 'angry', 'happy', 'happiness', 'sad', 'sadness', 'surprised', 'neutral']) {
      expect(error.message, name).toMatch(new RegExp(`\\b${name}\\b`));
    }
  });

  it('message lists the canonical classes', () => {
    expect(error.message).toContain(CANONICAL_CLASSES.join(', '));
  });

  it('message suggests --class-alias', () => {
    expect(error.message).toContain('--class-alias Contempt=<class>');
  });
});

describe('ClassAliases.fromPairs', () => {
  it('adds a valid pair', () => {
    const aliases = ClassAliases.fromPairs(['contempt=disgust']);
    expect(aliases.lookup('contempt')).toBe('disgust');
    expect(aliases.lookup('Contempt')).toBe('disgust');
  });

  it('keeps the defaults', () => {
    const aliases = ClassAliases.fromPairs(['contempt=disgust']);
    expect(aliases.lookup('happy')).toBe('happiness');
    expect(aliases.lookup('Sadness')).toBe('sadness');
  });

  it('accepts aliases as the target', () => {
    const aliases = ClassAliases.fromPairs(['joyful=happy', 'Very Angry=Angry']);
    expect(aliases.lookup('joyful')).toBe('happiness');
    expect(aliases.lookup('very_angry')).toBe('anger');
  });

  it('splits at the first equals sign', () => {
    // The class part "disgust=x" is not a class name, so the pair is rejected.
    const error = thrownBy(() => ClassAliases.fromPairs(['a=disgust=x']));
    expect(error.message).toContain('Invalid class "disgust=x"');
  });

  it('accepts an empty list', () => {
    expect(ClassAliases.fromPairs([]).lookup('angry')).toBe('anger');
  });

  it('rejects malformed pairs', () => {
    for (const pair of ['contempt', '=disgust', 'contempt=', '=', '']) {
      const error = thrownBy(() => ClassAliases.fromPairs([pair]));
      expect(error.message, pair).toBe(`Invalid class alias "${pair}": expected FOLDER=CLASS, for example contempt=disgust.`);
    }
  });

  it('rejects an unknown target class', () => {
    const error = thrownBy(() => ClassAliases.fromPairs(['contempt=scorn']));
    expect(error.message).toContain('Invalid class "scorn"');
    expect(error.message).toContain(CANONICAL_CLASSES.join(', '));
  });
});

describe('user aliases', () => {
  it('override a default alias', () => {
    const aliases = new ClassAliases({ neutral: 'sadness' });
    expect(aliases.lookup('neutral')).toBe('sadness');
    expect(aliases.lookup('Neutral')).toBe('sadness');
  });

  it('are normalised like lookups', () => {
    const aliases = new ClassAliases({ 'Very-Happy Faces': 'happiness' });
    expect(aliases.lookup('very_happy_faces')).toBe('happiness');
    expect(aliases.lookup('VERYHAPPYFACES')).toBe('happiness');
  });

  it('do not leak between instances', () => {
    new ClassAliases({ contempt: 'disgust' });
    expect(new ClassAliases().lookup('contempt')).toBeUndefined();
  });

  it('reject an invalid target', () => {
    const error = thrownBy(() => new ClassAliases({ contempt: 'scorn' }));
    expect(error.message).toBe(`Invalid class "scorn": expected one of ${CANONICAL_CLASSES.join(', ')}.`);
  });

  it('resolve uses the override', () => {
    const aliases = new ClassAliases({ contempt: 'disgust' });
    expect(aliases.resolve('Contempt', '/data/Contempt')).toBe('disgust');
  });
});

describe('toCanonicalClass', () => {
  it('accepts canonical names', () => {
    for (const cls of CANONICAL_CLASSES) {
      expect(toCanonicalClass(cls), cls).toBe(cls);
    }
  });

  it('accepts aliases and case', () => {
    expect(toCanonicalClass('happy')).toBe('happiness');
    expect(toCanonicalClass('ANGRY')).toBe('anger');
    expect(toCanonicalClass('Sad')).toBe('sadness');
  });

  it('rejects unknown names', () => {
    for (const name of ['contempt', '', 'happy.', 'anger1']) {
      const error = thrownBy(() => toCanonicalClass(name));
      expect(error.message, name).toBe(`Invalid class "${name}": expected one of ${CANONICAL_CLASSES.join(', ')}.`);
    }
  });

  it('ignores user aliases', () => {
    new ClassAliases({ contempt: 'disgust' });
    expect(() => toCanonicalClass('contempt')).toThrow('Invalid class "contempt"');
  });
});
