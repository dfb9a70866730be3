module.exports = {
  ...require('../../jest.preset.js'),
  displayName: 'app-postprocessing',
  rootDir: __dirname,
};
