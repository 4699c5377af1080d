// node:fs/promises in the browser build: the promises of ./fs.ts.
import { promises } from "./fs.js";

export const { stat, lstat, realpath, access, open, readFile, readdir, writeFile, mkdir, mkdtemp, rename, rm } =
  promises;
export const { rmdir, unlink, link, copyFile, chmod } = promises;
export default promises;
