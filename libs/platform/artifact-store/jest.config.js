module.exports = { ...require('../../../jest.preset.js'), displayName: 'artifact-store', rootDir: __dirname };
