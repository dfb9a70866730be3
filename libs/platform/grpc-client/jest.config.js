module.exports = { ...require('../../../jest.preset.js'), displayName: 'grpc-client', rootDir: __dirname };
