module.exports = { ...require('../../jest.preset.js'), displayName: 'app-processing', rootDir: __dirname };
