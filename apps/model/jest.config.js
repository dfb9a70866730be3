module.exports = { ...require('../../jest.preset.js'), displayName: 'app-model', rootDir: __dirname };
