// After `vite build`: writes a gzip and a brotli copy beside every compressible file under
// dist/assets, which the appliance sends to clients that accept them (appliance/src/web.rs).
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { brotliCompressSync, constants, gzipSync } from 'node:zlib';

const dir = new URL('../dist/assets/', import.meta.url).pathname;
let files = 0;
for (const name of readdirSync(dir)) {
  if (!/\.(js|css|svg|json|html)$/.test(name)) continue;
  const bytes = readFileSync(join(dir, name));
  writeFileSync(join(dir, `${name}.gz`), gzipSync(bytes, { level: 9 }));
  writeFileSync(
    join(dir, `${name}.br`),
    brotliCompressSync(bytes, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } }),
  );
  files += 1;
}
console.log(`compressed ${files} files in dist/assets`);
