// Fails when src/common/api/schema.d.ts is not what openapi-typescript generates from
// openapi.json (the appliance's unit test holds openapi.json to the served document): the
// typed client can never drift from the API. `npm run gen:api` regenerates it.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'check-api-'));
try {
  const out = join(dir, 'schema.d.ts');
  execFileSync(join(root, 'node_modules/.bin/openapi-typescript'), ['openapi.json', '-o', out], {
    cwd: root,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const want = readFileSync(out, 'utf8');
  const have = readFileSync(join(root, 'src/common/api/schema.d.ts'), 'utf8');
  if (want !== have) {
    console.error('src/common/api/schema.d.ts differs from openapi.json: run `npm run gen:api`');
    process.exit(1);
  }
  console.log('check:api: the typed client matches openapi.json');
} finally {
  rmSync(dir, { recursive: true, force: true });
}
