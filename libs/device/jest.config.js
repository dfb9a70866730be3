module.exports = { ...require('../../jest.preset.js'), displayName: 'device', rootDir: __dirname };
