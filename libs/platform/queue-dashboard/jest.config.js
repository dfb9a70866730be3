module.exports = {
  ...require('../../../jest.preset.js'),
  displayName: 'queue-dashboard',
  rootDir: __dirname,
};
