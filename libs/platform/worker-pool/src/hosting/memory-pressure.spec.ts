import { DEFAULT_THRESHOLDS, pressureOf, validateThresholds } from './memory-pressure';

describe('pressure', () => {
  it('is ok below high, high from 85 %, critical from 95 %', () => {
    expect(pressureOf(84, 100, DEFAULT_THRESHOLDS)).toBe('ok');
    expect(pressureOf(85, 100, DEFAULT_THRESHOLDS)).toBe('high');
    expect(pressureOf(95, 100, DEFAULT_THRESHOLDS)).toBe('critical');
    expect(pressureOf(5, 0, DEFAULT_THRESHOLDS)).toBe('ok');
  });

  it('refuses thresholds out of order, naming the field', () => {
    expect(() => validateThresholds({ high: 0.9, critical: 0.8 })).toThrow(/pressure/);
    expect(() => validateThresholds({ high: 0, critical: 0.8 })).toThrow(/pressure/);
  });
});
