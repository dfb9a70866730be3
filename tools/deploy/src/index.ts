export { COMPOSE_FILE, composeResolver, composeWorkloads, ensureComposeConfig, loadCompose } from './compose';
export type { ComposeLoad } from './compose';
export {
  checkComposeDependencies,
  checkImages,
  checkProbes,
  checkResources,
  checkSafety,
  checkSharedStorage,
} from './checks';
export { GPU_RESOURCE, checkGpu, gpuSharing } from './gpu';
export { GPU_SHARING_DIR, K8S_DIR, ROOT, k8sWorkloads, kustomizationFiles, readObjects } from './kubernetes';
export type { K8sObject, VolumeSource } from './kubernetes';
export { admittedSources, checkNetworkPolicies, k8sResolver } from './network';
export type { Source } from './network';
export { serviceConfigs } from './service-configs';
export type { ServiceConfig } from './service-configs';
export { checkAddresses, checkMounts, checkNodeViews, checkSecrets, loadContainers } from './service-env';
export type { LoadedContainer } from './service-env';
export type { Container, Workload } from './workload';
export { KUBERNETES_VALIDATE, validateSchemas } from './kubernetes-schema';
export type { SchemaResult } from './kubernetes-schema';
