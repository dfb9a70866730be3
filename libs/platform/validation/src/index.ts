export { isInsideRoots, Violations } from './violations';
