module.exports = {
  ...require('../../../jest.preset.js'),
  displayName: 'worker-supervisor',
  rootDir: __dirname,
};
