// The error every route answers with, as a schema (the contract's error answer). Apart from
// errors.ts, which every command loads, so that loading the error table does not load zod.
import { z } from 'zod';
import { ERROR_TABLE, type ErrorCode } from './errors.js';

export const WireErrorSchema = z.object({
  code: z.enum(Object.keys(ERROR_TABLE) as [ErrorCode, ...ErrorCode[]]),
  message: z.string(),
  hint: z.string().optional(),
});
