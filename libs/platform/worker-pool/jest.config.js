module.exports = { ...require('../../../jest.preset.js'), displayName: 'worker-pool', rootDir: __dirname };
