// Writes dist/src/core/contract-shapes.json: the contract's response and message schemas as
// shapes, which the client checks answers with without loading zod (run by scripts/build.sh).
import { writeFileSync } from 'node:fs';
import { shapeTable } from '../dist/src/core/shape-of-zod.js';
writeFileSync(new URL('../dist/src/core/contract-shapes.json', import.meta.url), JSON.stringify(shapeTable()) + '\n');
