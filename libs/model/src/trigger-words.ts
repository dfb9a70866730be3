/** How many of the most frequent training tags become trigger words, by default. */
export const DEFAULT_TRIGGER_TAGS = 10;

/**
 * LoRA activation words from training metadata, most useful first and without duplicates:
 * `modelspec.trigger_phrase` (comma-separated), then `ss_output_name`, then the most frequent tags
 * of kohya's `ss_tag_frequency` ({dataset dir: {tag: count}}, summed over dirs). Never throws.
 */
export function extractTriggerWords(
  metadata: Record<string, unknown>,
  maxTags = DEFAULT_TRIGGER_TAGS,
): string[] {
  const words: string[] = [];
  const add = (word: string): void => {
    const w = word.trim();
    if (w && !words.includes(w)) words.push(w);
  };

  const phrase = metadata['modelspec.trigger_phrase'];
  if (typeof phrase === 'string') phrase.split(',').forEach(add);
  const outputName = metadata['ss_output_name'];
  if (typeof outputName === 'string') add(outputName);

  const frequency = metadata['ss_tag_frequency'];
  if (typeof frequency === 'object' && frequency !== null && !Array.isArray(frequency)) {
    const totals = new Map<string, number>();
    for (const dir of Object.values(frequency as Record<string, unknown>)) {
      if (typeof dir !== 'object' || dir === null) continue;
      for (const [tag, count] of Object.entries(dir as Record<string, unknown>)) {
        const t = tag.trim();
        if (t && typeof count === 'number' && Number.isFinite(count))
          totals.set(t, (totals.get(t) ?? 0) + count);
      }
    }
    [...totals.entries()]
      .sort(([ta, a], [tb, b]) => b - a || ta.localeCompare(tb))
      .slice(0, maxTags)
      .forEach(([tag]) => add(tag));
  }
  return words;
}
