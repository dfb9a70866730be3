module.exports = { ...require('../../jest.preset.js'), displayName: 'app-inference', rootDir: __dirname };
