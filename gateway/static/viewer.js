// 3D preview of one SHARP scene with Spark (three.js). One WebGL renderer for the page; showing
// another result swaps the splat mesh.
//
// SHARP writes its scenes in the OpenCV camera frame of the input photo: x right, y down, z forward,
// camera at the origin. three.js is y up with the camera looking down -z, so the splat mesh is turned
// 180 degrees about x (quaternion (1, 0, 0, 0): y -> -y, z -> -z). The camera then starts at the
// origin with three's default orientation and the photo's vertical field of view,
// fov_y = 2 * atan(H / (2 * f_px)), which reproduces the photo; orbiting is around the scene's middle
// depth in front of the camera.
//
// Three and Spark are imported lazily, so the rest of the page works even where WebGL is missing.

const BACKGROUND = 0x14181f;
const FRAMES_BEFORE_READY = 30;
const TAIL_FRAMES = 3;
const TAIL_MS = 300;

export function cameraFromMetadata(meta) {
  // Tolerant reader: the metadata JSON names these in a few equivalent ways.
  const m = meta && typeof meta === "object" ? meta : {};
  const cam = (m.camera && typeof m.camera === "object" ? m.camera : null) || {};
  const num = (...values) => {
    for (const v of values) {
      const n = Number(v);
      if (v !== null && v !== undefined && Number.isFinite(n) && n > 0) return n;
    }
    return null;
  };
  let intrinsic = m.intrinsic ?? m.intrinsics ?? cam.intrinsic ?? cam.intrinsics;
  if (Array.isArray(intrinsic) && Array.isArray(intrinsic[0])) intrinsic = intrinsic.flat();
  if (intrinsic && !Array.isArray(intrinsic) && Array.isArray(intrinsic.matrix)) {
    intrinsic = { ...intrinsic, focal_px: intrinsic.focal_px ?? intrinsic.matrix.flat()[0] };
  }
  const intrinsicF = Array.isArray(intrinsic) ? intrinsic[0] : intrinsic && intrinsic.focal_px;
  const size = m.image_size ?? cam.image_size;
  const sizeW = Array.isArray(size) ? size[0] : size && (size.width ?? size.width_px);
  const sizeH = Array.isArray(size) ? size[1] : size && (size.height ?? size.height_px);
  const width = num(m.width_px, cam.width_px, m.width, sizeW, Array.isArray(intrinsic) ? 2 * intrinsic[2] : null);
  const height = num(m.height_px, cam.height_px, m.height, sizeH, Array.isArray(intrinsic) ? 2 * intrinsic[5] : null);
  const focal = num(m.focal_px, cam.focal_px, intrinsicF);
  let fovY = num(m.vertical_fov_deg, cam.vertical_fov_deg);
  if (!fovY && focal && height) fovY = (2 * Math.atan(height / (2 * focal)) * 180) / Math.PI;
  // Middle depth: 1 / mean of the disparity quantiles when present.
  const disp = m.disparity_quantiles ?? m.disparity ?? m.disparity_range;
  let depth = num(m.median_depth, m.depth_median);
  if (!depth && Array.isArray(disp) && disp.length) {
    const values = disp.map(Number).filter((v) => Number.isFinite(v) && v > 0);
    if (values.length) depth = values.length / values.reduce((a, b) => a + b, 0);
    if (values.length >= 2) depth = 2 / (values[0] + values[values.length - 1]);
  } else if (!depth && disp && typeof disp === "object") {
    const lo = num(disp.q10, disp.low, disp.p10);
    const hi = num(disp.q90, disp.high, disp.p90);
    if (lo && hi) depth = 2 / (lo + hi);
  }
  return { width, height, focal, fovY, depth, randomWeights: m.random_weights === true };
}

function webgl2Available() {
  try {
    const canvas = document.createElement("canvas");
    return Boolean(canvas.getContext("webgl2"));
  } catch {
    return false;
  }
}

export class SplatViewer {
  constructor(container, { onState = () => {} } = {}) {
    this.container = container;
    this.onState = onState;
    this.loadToken = 0;
    this.mesh = null;
    this.ready = null;
    this.home = null;
    this.frames = 0;
    this.setState("empty");
  }

  setState(state, detail = {}) {
    this.container.dataset.state = state;
    this.onState(state, detail);
  }

  async init() {
    if (this.ready) return this.ready;
    this.ready = (async () => {
      if (!webgl2Available()) throw Object.assign(new Error("WebGL 2 unavailable"), { code: "nowebgl" });
      const [THREE, SPARK, ORBIT] = await Promise.all([
        import("three"),
        import("@sparkjsdev/spark"),
        import("three/addons/controls/OrbitControls.js"),
      ]);
      this.THREE = THREE;
      this.SPARK = SPARK;
      const canvas = document.createElement("canvas");
      canvas.className = "viewer-canvas";
      canvas.tabIndex = 0; // orbit controls listen for keys on the focused canvas
      canvas.setAttribute("role", "img");
      this.container.replaceChildren(canvas);
      this.canvas = canvas;
      const renderer = new THREE.WebGLRenderer({ canvas, antialias: false, alpha: false });
      renderer.setPixelRatio(Math.min(window.devicePixelRatio || 1, 2));
      renderer.setClearColor(BACKGROUND, 1);
      this.renderer = renderer;
      this.scene = new THREE.Scene();
      this.scene.background = new THREE.Color(BACKGROUND);
      // Spark says when a new sort order (or LoD) is ready: draw then, not on a timer.
      this.spark = new SPARK.SparkRenderer({ renderer, onDirty: () => this.invalidate(2) });
      this.scene.add(this.spark);
      this.camera = new THREE.PerspectiveCamera(50, 1, 0.01, 1000);
      const controls = new ORBIT.OrbitControls(this.camera, canvas);
      controls.enableDamping = true;
      controls.dampingFactor = 0.12;
      controls.zoomSpeed = 0.8;
      controls.listenToKeyEvents(canvas); // arrow keys pan while the canvas has focus
      this.controls = controls;
      this.resize();
      this.observer = new ResizeObserver(() => this.resize());
      this.observer.observe(this.container);
      renderer.setAnimationLoop(() => this.frame());
    })();
    try {
      await this.ready;
    } catch (err) {
      this.ready = null;
      throw err;
    }
    return this.ready;
  }

  resize() {
    if (!this.renderer) return;
    const width = Math.max(1, this.container.clientWidth);
    const height = Math.max(1, this.container.clientHeight);
    this.renderer.setSize(width, height, false);
    this.camera.aspect = width / height;
    this.camera.updateProjectionMatrix();
    this.invalidate();
  }

  // Draw on demand: while the view moves (or damps out), until a new scene is shown, and when
  // Spark reports a new sort order (onDirty; it sorts in a worker, so the order for a new
  // viewpoint lands a little later). An idle preview costs nothing.
  invalidate(frames = TAIL_FRAMES) {
    this.pending = Math.max(this.pending || 0, frames);
    this.activeUntil = performance.now() + TAIL_MS;
  }

  frame() {
    if (this.controls.update()) this.invalidate(); // moving, or damping out
    if (this.container.dataset.state === "settling") this.invalidate(1); // until the scene is shown
    if (!(this.pending > 0) && !(performance.now() < this.activeUntil)) return;
    this.pending = Math.max(0, (this.pending || 0) - 1);
    this.renderer.render(this.scene, this.camera);
    if (this.mesh && this.container.dataset.state === "settling") {
      // Shown once a depth sort made after the load is on screen (Spark sorts in a worker), or
      // after FRAMES_BEFORE_READY frames whatever Spark reports.
      this.frames += 1;
      const sorted = this.spark.lastSortTime > this.loadedAt && !this.spark.sorting;
      if (sorted) this.sortedFrames += 1;
      if ((this.sortedFrames >= 2 && this.frames >= 3) || this.frames >= FRAMES_BEFORE_READY) {
        this.setState("rendered", { name: this.name });
      }
    }
  }

  // Show one result. `fetchBytes(url)` and `fetchJson(url)` come from the page (they add the API key).
  async show({ name, spzUrl, metadataUrl, fetchBytes, fetchJson }) {
    const token = ++this.loadToken;
    this.name = name;
    this.setState("loading", { name });
    try {
      await this.init();
      const [bytes, meta] = await Promise.all([
        fetchBytes(spzUrl),
        metadataUrl ? fetchJson(metadataUrl).catch(() => null) : Promise.resolve(null),
      ]);
      if (token !== this.loadToken) return;
      const info = cameraFromMetadata(meta);
      const mesh = new this.SPARK.SplatMesh({
        fileBytes: new Uint8Array(bytes),
        fileType: this.SPARK.SplatFileType ? this.SPARK.SplatFileType.SPZ : "spz",
        fileName: "scene.spz",
      });
      mesh.quaternion.set(1, 0, 0, 0); // OpenCV (y down, z forward) -> three (y up, z backward)
      await mesh.initialized;
      if (token !== this.loadToken) {
        mesh.dispose();
        return;
      }
      if (this.mesh) {
        this.scene.remove(this.mesh);
        this.mesh.dispose();
      }
      this.mesh = mesh;
      this.scene.add(mesh);
      this.home = this.homeView(info, mesh);
      // Match the stage to the photo's shape so the first frame shows the photo's framing.
      if (info.width && info.height) {
        const aspect = Math.min(2.4, Math.max(0.5, info.width / info.height));
        this.container.style.setProperty("--aspect", aspect.toFixed(4));
      }
      this.canvas.setAttribute("aria-label", name);
      this.resetView();
      this.frames = 0;
      this.sortedFrames = 0;
      this.loadedAt = performance.now();
      this.invalidate();
      this.setState("settling", { name, info });
    } catch (err) {
      if (token !== this.loadToken) return;
      this.setState(err && err.code === "nowebgl" ? "nowebgl" : "error", { name, error: err });
    }
  }

  homeView(info, mesh) {
    let depth = info.depth;
    if (!depth) {
      try {
        // Centre of the splats' bounds in the OpenCV frame: z is forward.
        const box = mesh.getBoundingBox(true);
        const z = (box.min.z + box.max.z) / 2;
        if (Number.isFinite(z) && z > 0) depth = z;
      } catch {
        /* fall back below */
      }
    }
    return {
      fovY: info.fovY && info.fovY > 1 && info.fovY < 170 ? info.fovY : 50,
      depth: depth && depth > 0.01 && depth < 1e4 ? depth : 2,
    };
  }

  resetView() {
    if (!this.home || !this.camera) return;
    const { fovY, depth } = this.home;
    // Let any motion still damping out finish first, so it cannot carry on after the reset.
    this.controls.enableDamping = false;
    this.controls.update();
    this.camera.fov = fovY;
    this.camera.near = Math.max(0.001, depth / 1000);
    this.camera.far = depth * 1000;
    this.camera.position.set(0, 0, 0);
    this.camera.up.set(0, 1, 0);
    this.camera.quaternion.identity();
    this.camera.updateProjectionMatrix();
    // Orbit around the scene's middle; after the flip the scene lies along -z.
    this.controls.target.set(0, 0, -depth);
    this.controls.minDistance = depth * 0.05;
    this.controls.maxDistance = depth * 20;
    this.controls.update();
    this.controls.enableDamping = true;
    this.invalidate();
  }
}
