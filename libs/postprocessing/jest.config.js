module.exports = { ...require('../../jest.preset.js'), displayName: 'postprocessing', rootDir: __dirname };
