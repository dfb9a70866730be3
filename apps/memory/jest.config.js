module.exports = { ...require('../../jest.preset.js'), displayName: 'app-memory', rootDir: __dirname };
