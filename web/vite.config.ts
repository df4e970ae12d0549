import { defineConfig } from 'vite';

// The dashboard is embedded in the hanbat binary (crates/web/build.rs sets HANBAT_WEB_OUT to a
// folder in cargo's OUT_DIR); `npm run build` alone writes dist/.
export default defineConfig({
  base: '/',
  build: {
    outDir: process.env.HANBAT_WEB_OUT ?? 'dist',
    emptyOutDir: true,
    target: 'es2022',
    // The boundaries are fetched at run time as their own files, never inlined into the script.
    assetsInlineLimit: 0,
    chunkSizeWarningLimit: 400,
  },
  server: {
    // `npm run dev` against a running `hanbat demo` (default port, or HANBAT_DEV_BROKER).
    proxy: {
      '/ngsi-ld': process.env.HANBAT_DEV_BROKER ?? 'http://127.0.0.1:1026',
      '/hanbat': process.env.HANBAT_DEV_BROKER ?? 'http://127.0.0.1:1026',
    },
  },
});
