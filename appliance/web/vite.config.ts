// The one Vite project of the appliance's web apps: each app is an entry page
// (`centre.html` today); `src/common/` is what the apps share.
import { fileURLToPath } from 'node:url';
import vue from '@vitejs/plugin-vue';
import { defineConfig } from 'vitest/config';

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));

export default defineConfig({
  plugins: [vue()],
  resolve: { alias: { '@': here('./src') } },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    assetsDir: 'assets',
    rollupOptions: { input: { centre: here('./centre.html') } },
  },
  test: { environment: 'jsdom', include: ['src/**/*.test.ts'] },
});
