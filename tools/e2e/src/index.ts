export { FIXTURES, descendants, freePort, isAlive, listProcesses, startStack } from './stack';
export type { InferenceNode, Stack, StackOptions } from './stack';
