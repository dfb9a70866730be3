module.exports = { ...require('../../jest.preset.js'), displayName: 'app-device', rootDir: __dirname };
