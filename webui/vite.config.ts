// The UI's build: one entry (index.html), hashed files under assets/, written straight into
// the Python package (appliance/webui/dist) so that the node serves them and ships them.
// React's JSX goes through esbuild (no React plugin: fast refresh is not needed to build).
import { defineConfig } from "vitest/config";

export default defineConfig({
  base: "/",
  esbuild: { jsx: "automatic" },
  build: {
    outDir: "../appliance/webui/dist",
    emptyOutDir: true,
    target: "es2022",
    assetsInlineLimit: 0, // no data: URLs for fonts or images: the CSP serves them from 'self'
    modulePreload: { polyfill: false }, // every supported browser has modulepreload
    reportCompressedSize: false,
    chunkSizeWarningLimit: 600,
    rollupOptions: {
      onwarn(warning, warn) {
        // TanStack Query marks its modules "use client" for React Server Components: meaningless here.
        if (warning.code === "MODULE_LEVEL_DIRECTIVE") return;
        warn(warning);
      },
    },
  },
  server: {
    // `npm run dev` talks to a node's API (set DEBVISOR_API, default the README's node)
    proxy: {
      "/api": {
        target: process.env.DEBVISOR_API ?? "https://127.0.0.1:8443",
        secure: false,
        ws: true,
        changeOrigin: true,
      },
    },
  },
  test: {
    environment: "jsdom",
    include: ["src/**/*.test.{ts,tsx}"],
    css: false,
    // PatternFly's modules import their CSS: let Vite (not Node) load them in tests.
    server: { deps: { inline: [/@patternfly\//] } },
  },
});
