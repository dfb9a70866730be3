// @dops/queue-dashboard — bull-board over the dops queues, read-only, HTTPS, operator tokens only.
export { DASHBOARD_PATH, startQueueDashboard } from './queue-dashboard';
export type { QueueDashboard, QueueDashboardOptions } from './queue-dashboard';
export { dashboardAccess } from './bearer-access';
export type { DashboardAccess } from './bearer-access';
