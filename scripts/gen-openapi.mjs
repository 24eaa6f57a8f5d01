// Writes docs/api/openapi.json from the contract (run after the build: `npm run openapi`).
import { writeFileSync } from 'node:fs';
import { openApiDocument } from '../dist/src/core/openapi.js';
writeFileSync(new URL('../docs/api/openapi.json', import.meta.url), JSON.stringify(openApiDocument(), null, 2) + '\n');
