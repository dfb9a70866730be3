export { checkConfined, confinePath, isInside } from './confine-path';
export type { ConfinedPath, Confinement } from './confine-path';
export { Violations } from './violations';
