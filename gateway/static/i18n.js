// English and Chinese labels. Every string reaches the page through textContent or an attribute,
// never as HTML. `t(key, vars)` fills {name} placeholders with plain text.

const MESSAGES = {
  en: {
    "app.title": "MLSharp — one photo to 3D",
    "app.tagline": "Turn a photo into a 3D Gaussian-splat scene with Apple's SHARP model.",
    "lang.toggle": "中文",
    "lang.toggle.label": "Switch the page to Chinese",
    "settings.title": "Access",
    "settings.apikey": "API key (only if the server requires one)",
    "settings.apikey.hint": "Kept in this tab only (session storage); sent with every request.",
    "settings.apikey.clear": "Forget key",
    "upload.title": "Photos",
    "upload.drop": "Drop photos here",
    "upload.or": "or",
    "upload.choose": "Choose photos…",
    "upload.hint": "JPEG, PNG, WebP or HEIC. One or many.",
    "upload.none": "No photo chosen yet.",
    "upload.remove": "Remove",
    "upload.remove.label": "Remove {name}",
    "upload.clear": "Clear all",
    "upload.count": "{count} photos chosen",
    "upload.count.one": "1 photo chosen",
    "focal.title": "Focal length (optional)",
    "focal.value": "Focal length",
    "focal.unit": "Unit",
    "focal.unit.mm": "mm (35 mm equiv.)",
    "focal.unit.px": "pixels",
    "focal.hint": "Leave empty to use the photo's EXIF data (or a default).",
    "formats.title": "Download formats",
    "formats.hint": "SPZ is always made too: the 3D preview uses it.",
    "format.ply": "PLY",
    "format.ply-clean": "Clean PLY",
    "format.spz": "SPZ",
    "format.splat": "splat",
    "format.metadata": "Metadata JSON",
    "format.ply.desc": "full SHARP layout with camera metadata",
    "format.ply-clean.desc": "vertex data only, for picky tools",
    "format.spz.desc": "compact, about 5× smaller",
    "format.splat.desc": "for older web viewers",
    "submit": "Make 3D",
    "submit.busy": "Uploading…",
    "jobs.title": "Results",
    "jobs.empty": "Results appear here.",
    "job.heading": "Job {id}",
    "job.close": "Close",
    "job.close.label": "Close job {id}",
    "job.cancel": "Cancel job",
    "job.zip": "Download all (zip)",
    "state.queued": "Waiting in the queue",
    "state.running": "Working",
    "state.completed": "Done",
    "state.partial": "Done, with errors",
    "state.failed": "Failed",
    "state.cancelled": "Cancelled",
    "state.expired": "Expired",
    "file.state.pending": "Waiting",
    "file.state.running": "Working",
    "file.state.done": "Done",
    "file.state.failed": "Failed",
    "file.state.cancelled": "Cancelled",
    "stage.inference": "Making the 3D scene",
    "stage.render": "Rendering preview and video",
    "format.preview": "Preview PNG",
    "format.orbit": "Orbit video MP4",
    "render.option": "Also render a preview image and an orbit video (slower)",
    "render.still": "Rendered preview of {name}",
    "render.video": "Download the orbit video",
    "file.preview": "Show in 3D",
    "file.previewing": "Shown in 3D",
    "file.downloads": "Downloads for {name}",
    "file.download.label": "Download {format} for {name}",
    "live.sse": "Live updates",
    "live.poll": "Checking every few seconds",
    "viewer.title": "3D preview",
    "viewer.empty": "Finish a photo to see it here in 3D.",
    "viewer.loading": "Loading the preview of {name}…",
    "viewer.ready": "{name}: drag to orbit, scroll or pinch to zoom, right-drag to pan.",
    "viewer.reset": "Reset view",
    "viewer.failed": "The 3D preview could not be shown: {message}",
    "viewer.nowebgl": "This browser cannot show 3D (WebGL 2 is off or missing). The downloads still work.",
    "viewer.canvas": "3D preview of {name}. Use the mouse or touch to orbit and zoom.",
    "viewer.random": "Made with random weights: a test result, not a real SHARP scene.",
    "history.title": "Earlier jobs in this browser",
    "history.empty": "None yet.",
    "history.open": "Open",
    "history.open.label": "Open job {id}",
    "history.forget": "Forget",
    "history.forget.label": "Forget job {id}",
    "history.clear": "Forget all",
    "history.files": "{count} photos",
    "history.files.one": "1 photo",
    "err.none": "Choose at least one photo first.",
    "err.focal": "The focal length must be a positive number.",
    "err.network": "The server could not be reached. Check your connection and try again.",
    "err.400": "The request was not accepted",
    "err.401": "An API key is needed (or the key is wrong)",
    "err.403": "This API key may not do that",
    "err.404": "Not found (it may have expired)",
    "err.413": "Too large",
    "err.too_large.max": "Too large: max {max}",
    "err.too_many": "Too many photos: at most {count} per job",
    "err.not_image": "Not an image (or a damaged one)",
    "err.415": "Not an image",
    "err.422": "Something in the request is not valid",
    "err.429": "The server is busy: try again in a moment",
    "err.503": "The server is not ready yet: try again in a moment",
    "err.5xx": "The server had a problem",
    "err.other": "Something went wrong",
    "err.retry": "Try again in {seconds} s.",
    "err.dismiss": "Dismiss",
    "err.job.load": "The job could not be loaded",
    "err.download": "The download failed",
  },
  zh: {
    "app.title": "MLSharp — 一张照片生成 3D",
    "app.tagline": "用 Apple 的 SHARP 模型把一张照片变成 3D 高斯泼溅场景。",
    "lang.toggle": "English",
    "lang.toggle.label": "将页面切换为英文",
    "settings.title": "访问",
    "settings.apikey": "API 密钥（仅在服务器要求时填写）",
    "settings.apikey.hint": "只保存在当前标签页（会话存储）中，随每个请求发送。",
    "settings.apikey.clear": "清除密钥",
    "upload.title": "照片",
    "upload.drop": "把照片拖到这里",
    "upload.or": "或",
    "upload.choose": "选择照片…",
    "upload.hint": "JPEG、PNG、WebP 或 HEIC，可选一张或多张。",
    "upload.none": "尚未选择照片。",
    "upload.remove": "移除",
    "upload.remove.label": "移除 {name}",
    "upload.clear": "全部清除",
    "upload.count": "已选择 {count} 张照片",
    "upload.count.one": "已选择 1 张照片",
    "focal.title": "焦距（可选）",
    "focal.value": "焦距",
    "focal.unit": "单位",
    "focal.unit.mm": "毫米（35mm 等效）",
    "focal.unit.px": "像素",
    "focal.hint": "留空则使用照片的 EXIF 信息（或默认值）。",
    "formats.title": "下载格式",
    "formats.hint": "总会同时生成 SPZ：3D 预览使用它。",
    "format.ply": "PLY",
    "format.ply-clean": "精简 PLY",
    "format.spz": "SPZ",
    "format.splat": "splat",
    "format.metadata": "元数据 JSON",
    "format.ply.desc": "完整 SHARP 格式，含相机元数据",
    "format.ply-clean.desc": "仅顶点数据，兼容挑剔的工具",
    "format.spz.desc": "紧凑格式，约小 5 倍",
    "format.splat.desc": "适用于较旧的网页查看器",
    "submit": "生成 3D",
    "submit.busy": "正在上传…",
    "jobs.title": "结果",
    "jobs.empty": "结果会显示在这里。",
    "job.heading": "任务 {id}",
    "job.close": "关闭",
    "job.close.label": "关闭任务 {id}",
    "job.cancel": "取消任务",
    "job.zip": "全部下载（zip）",
    "state.queued": "排队中",
    "state.running": "处理中",
    "state.completed": "完成",
    "state.partial": "完成，但有错误",
    "state.failed": "失败",
    "state.cancelled": "已取消",
    "state.expired": "已过期",
    "file.state.pending": "等待中",
    "file.state.running": "处理中",
    "file.state.done": "完成",
    "file.state.failed": "失败",
    "file.state.cancelled": "已取消",
    "stage.inference": "正在生成 3D 场景",
    "stage.render": "正在渲染预览图和视频",
    "format.preview": "预览 PNG",
    "format.orbit": "环绕视频 MP4",
    "render.option": "同时渲染预览图和环绕视频（较慢）",
    "render.still": "{name} 的渲染预览",
    "render.video": "下载环绕视频",
    "file.preview": "3D 查看",
    "file.previewing": "正在 3D 显示",
    "file.downloads": "{name} 的下载",
    "file.download.label": "下载 {name} 的 {format}",
    "live.sse": "实时更新",
    "live.poll": "每隔几秒检查一次",
    "viewer.title": "3D 预览",
    "viewer.empty": "照片处理完成后会在这里以 3D 显示。",
    "viewer.loading": "正在加载 {name} 的预览…",
    "viewer.ready": "{name}：拖动旋转，滚轮或双指缩放，右键拖动平移。",
    "viewer.reset": "重置视角",
    "viewer.failed": "无法显示 3D 预览：{message}",
    "viewer.nowebgl": "此浏览器无法显示 3D（WebGL 2 未开启或不可用）。下载仍然可用。",
    "viewer.canvas": "{name} 的 3D 预览。可用鼠标或触摸旋转和缩放。",
    "viewer.random": "使用随机权重生成：仅为测试结果，并非真实的 SHARP 场景。",
    "history.title": "此浏览器中的历史任务",
    "history.empty": "暂无。",
    "history.open": "打开",
    "history.open.label": "打开任务 {id}",
    "history.forget": "删除",
    "history.forget.label": "删除任务 {id}",
    "history.clear": "全部删除",
    "history.files": "{count} 张照片",
    "history.files.one": "1 张照片",
    "err.none": "请先选择至少一张照片。",
    "err.focal": "焦距必须是正数。",
    "err.network": "无法连接服务器。请检查网络后重试。",
    "err.400": "请求未被接受",
    "err.401": "需要 API 密钥（或密钥错误）",
    "err.403": "此 API 密钥无权执行该操作",
    "err.404": "未找到（可能已过期）",
    "err.413": "文件过大",
    "err.too_large.max": "文件过大：最大 {max}",
    "err.too_many": "照片太多：每个任务最多 {count} 张",
    "err.not_image": "不是图片（或图片已损坏）",
    "err.415": "不是图片",
    "err.422": "请求中有无效的内容",
    "err.429": "服务器繁忙：请稍后重试",
    "err.503": "服务器尚未就绪：请稍后重试",
    "err.5xx": "服务器出现问题",
    "err.other": "出现错误",
    "err.retry": "请在 {seconds} 秒后重试。",
    "err.dismiss": "关闭",
    "err.job.load": "无法加载任务",
    "err.download": "下载失败",
  },
};

export const LANGUAGES = Object.keys(MESSAGES);
const STORAGE_KEY = "mlsharp.lang";
let current = "en";
const listeners = new Set();

function initialLanguage() {
  try {
    const saved = localStorage.getItem(STORAGE_KEY);
    if (saved && MESSAGES[saved]) return saved;
  } catch {
    /* storage may be disabled */
  }
  const preferred = (navigator.languages || [navigator.language || "en"]).map((l) => String(l).toLowerCase());
  return preferred.some((l) => l.startsWith("zh")) ? "zh" : "en";
}

export function language() {
  return current;
}

export function t(key, vars = {}) {
  const table = MESSAGES[current] || MESSAGES.en;
  const template = table[key] ?? MESSAGES.en[key] ?? key;
  return template.replace(/\{(\w+)\}/g, (match, name) => (name in vars ? String(vars[name]) : match));
}

// Fill static elements: data-i18n -> textContent; data-i18n-attr="attr:key;attr:key" -> attributes.
export function applyTranslations(root = document) {
  document.documentElement.lang = current === "zh" ? "zh-CN" : "en";
  document.title = t("app.title");
  for (const el of root.querySelectorAll("[data-i18n]")) {
    el.textContent = t(el.dataset.i18n);
  }
  for (const el of root.querySelectorAll("[data-i18n-attr]")) {
    for (const pair of el.dataset.i18nAttr.split(";")) {
      const [attr, key] = pair.split(":").map((s) => s.trim());
      if (attr && key) el.setAttribute(attr, t(key));
    }
  }
}

export function setLanguage(lang) {
  if (!MESSAGES[lang]) return;
  current = lang;
  try {
    localStorage.setItem(STORAGE_KEY, lang);
  } catch {
    /* ignore */
  }
  applyTranslations();
  for (const fn of listeners) fn(lang);
}

export function onLanguageChange(fn) {
  listeners.add(fn);
}

current = initialLanguage();
