import { ErrorThrottle, errorFields } from './error-throttle';

function refused(): Error {
  return Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6379'), { code: 'ECONNREFUSED' });
}

describe('ErrorThrottle', () => {
  afterEach(() => jest.useRealTimers());

  it('logs one line per distinct error and source per interval, then counts what it left out', () => {
    jest.useFakeTimers({ now: 0 });
    const lines: { fields: object; message?: string }[] = [];
    const throttle = new ErrorThrottle(
      { warn: (fields, message) => lines.push({ fields, message }) },
      'queue connection error',
      1_000,
    );
    for (let i = 0; i < 50; i++) throttle.report(refused(), { queue: 'inference' });
    throttle.report(refused(), { queue: 'postprocessing' });
    expect(lines).toEqual([
      {
        fields: {
          queue: 'inference',
          error: { message: 'connect ECONNREFUSED 127.0.0.1:6379', code: 'ECONNREFUSED' },
          suppressed: 0,
        },
        message: 'queue connection error',
      },
      {
        fields: {
          queue: 'postprocessing',
          error: { message: 'connect ECONNREFUSED 127.0.0.1:6379', code: 'ECONNREFUSED' },
          suppressed: 0,
        },
        message: 'queue connection error',
      },
    ]);
    jest.setSystemTime(1_001);
    throttle.report(refused(), { queue: 'inference' });
    expect(lines).toHaveLength(3);
    expect(lines[2]!.fields).toMatchObject({ suppressed: 49 });
  });

  it('keeps no stack: the message and code only, and the inner messages of an AggregateError', () => {
    expect(errorFields(refused())).toEqual({
      message: 'connect ECONNREFUSED 127.0.0.1:6379',
      code: 'ECONNREFUSED',
    });
    const both = new AggregateError(
      [new Error('connect ECONNREFUSED ::1:6379'), new Error('connect ECONNREFUSED 127.0.0.1:6379')],
      '',
    );
    expect(errorFields(both)).toEqual({
      message: 'connect ECONNREFUSED ::1:6379; connect ECONNREFUSED 127.0.0.1:6379',
    });
    expect(errorFields('plain')).toEqual({ message: 'plain' });
  });
});
