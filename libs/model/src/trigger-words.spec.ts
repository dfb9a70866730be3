import { extractTriggerWords } from './trigger-words';

describe('extractTriggerWords', () => {
  it('orders trigger phrase, output name, then tags by total frequency, without duplicates', () => {
    const words = extractTriggerWords({
      'modelspec.trigger_phrase': 'sks, red hat',
      ss_output_name: 'sks',
      ss_tag_frequency: { a: { tree: 2, ' sky': 5, sks: 9 }, b: { tree: 4 } },
    });
    expect(words).toEqual(['sks', 'red hat', 'tree', 'sky']);
  });

  it('limits tags and ignores malformed frequency data', () => {
    const freq = { d: Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`t${i}`, i])) };
    expect(extractTriggerWords({ ss_tag_frequency: freq }, 3)).toEqual(['t19', 't18', 't17']);
    expect(extractTriggerWords({ ss_tag_frequency: 'not parsed', ss_output_name: 5 })).toEqual([]);
    expect(extractTriggerWords({ ss_tag_frequency: { d: { x: 'many' } } })).toEqual([]);
  });
});
