// node:stream/promises in the browser build (see ./stream.ts).
export { pipeline } from "./stream.js";
