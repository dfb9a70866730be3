module.exports = { ...require('../../../jest.preset.js'), displayName: 'model-host', rootDir: __dirname };
