// The web apps' languages: Chinese first (zh-CN, the default), English complete. The choice
// is kept in this browser; API error codes have their own wording in each language, and the
// API's message is shown where a code has none.
import { createI18n } from 'vue-i18n';

const zh = {
  app: { centre: '会诊中心', site: '远程会诊与双向转诊平台', language: 'English' },
  login: {
    title: '登录',
    login: '账号',
    password: '口令',
    totp: '动态验证码',
    totpHint: '请输入身份验证器应用中的 6 位验证码',
    submit: '登录',
    ended: '登录已过期，请重新登录；登录后回到刚才的页面。',
  },
  totp: {
    title: '设置动态验证码',
    hint: '管理员账号须使用第二重认证：用身份验证器应用扫描二维码（或输入密钥），再输入应用显示的 6 位验证码。',
    qr: '身份验证器二维码',
    secret: '密钥',
    code: '验证码',
    submit: '启用',
  },
  password: {
    title: '修改口令',
    hint: '首次登录或口令到期，请先设置新口令。',
    old: '当前口令',
    new: '新口令',
    confirm: '再次输入新口令',
    mismatch: '两次输入的新口令不一致',
    submit: '保存',
  },
  shell: { logout: '退出登录', worklist: '我的会诊' },
  worklist: {
    title: '我的会诊',
    empty: '暂无会诊',
    id: '编号',
    kind: '类型',
    state: '状态',
    reason: '申请原因',
    question: '会诊目的',
    diagnosis: '初步诊断',
    studies: '影像',
    refresh: '刷新',
  },
  kind: { remote: '远程会诊', mdt: '多学科会诊', mobile: '移动会诊' },
  filter: { all: '全部', label: '状态筛选' },
  case: {
    title: '会诊申请 {id}',
    back: '返回列表',
    patient: '患者编号',
    urgency: '紧急程度',
    history: '办理记录',
    rejected: '质控退回原因',
    submit: '提交申请',
    qcPass: '质控通过',
    qcReject: '退回',
    rejectTitle: '退回申请',
    rejectHint: '勾选或填写需要申请医生补充、修改的内容（至少一项）。',
    other: '其他原因',
    confirm: '确定',
    cancel: '取消',
    conflict: '该申请已被他人处理，已显示最新状态，请确认后重试。',
    noReason: '请至少选择或填写一项退回原因',
    done: '已办理',
  },
  checklist: {
    history: '病史资料不完整',
    images: '缺少相关影像资料',
    question: '会诊目的不明确',
    diagnosis: '初步诊断缺失或不规范',
  },
  action: {
    submit: '提交',
    qc_pass: '质控通过',
    qc_reject: '质控退回',
    schedule: '排期',
    check_in: '签到',
    draft_report: '撰写报告',
    sign: '签署报告',
    amend: '修订报告',
    close: '结束',
    cancel: '撤销',
  },
  urgency: { routine: '普通', urgent: '加急', emergency: '急诊' },
  state: {
    draft: '草稿',
    submitted: '待质控',
    rejected: '已退回',
    qc_passed: '待排期',
    scheduled: '已排期',
    in_progress: '会诊中',
    report_drafted: '报告待签',
    signed: '报告已签',
    closed: '已结束',
    cancelled: '已取消',
  },
  errors: {
    required: '必填',
    bad_credentials: '账号或口令错误',
    locked: '连续多次输错口令，账号已锁定，请稍后再试',
    unauthenticated: '登录已过期，请重新登录',
    totp_required: '请输入动态验证码',
    bad_totp: '动态验证码错误或已使用',
    network: '无法连接服务器，请检查网络',
    internal: '服务器内部错误（已记录）',
  },
};

type Messages = typeof zh;

const en: Messages = {
  app: { centre: 'Consultation centre', site: 'Remote consultation and referral', language: '中文' },
  login: {
    title: 'Log in',
    login: 'Login',
    password: 'Password',
    totp: 'Authenticator code',
    totpHint: 'Enter the 6-digit code from your authenticator app',
    submit: 'Log in',
    ended: 'Your session ended: log in again to return to the page you were on.',
  },
  totp: {
    title: 'Set up the authenticator',
    hint: 'Administrators need a second factor: scan the QR code with an authenticator app (or type the secret), then enter the 6-digit code it shows.',
    qr: 'Authenticator QR code',
    secret: 'Secret',
    code: 'Code',
    submit: 'Turn on',
  },
  password: {
    title: 'Change password',
    hint: 'Set a new password before you go on (first login, or the password expired).',
    old: 'Current password',
    new: 'New password',
    confirm: 'New password again',
    mismatch: 'The two new passwords differ',
    submit: 'Save',
  },
  shell: { logout: 'Log out', worklist: 'My consultations' },
  worklist: {
    title: 'My consultations',
    empty: 'No consultations',
    id: 'No.',
    kind: 'Kind',
    state: 'State',
    reason: 'Reason',
    question: 'Question',
    diagnosis: 'Diagnosis',
    studies: 'Studies',
    refresh: 'Refresh',
  },
  kind: { remote: 'Remote', mdt: 'MDT', mobile: 'Mobile' },
  filter: { all: 'All', label: 'Filter by state' },
  case: {
    title: 'Consultation request {id}',
    back: 'Back to the list',
    patient: 'Patient no.',
    urgency: 'Urgency',
    history: 'History',
    rejected: 'Returned by quality control because',
    submit: 'Submit',
    qcPass: 'Pass QC',
    qcReject: 'Return',
    rejectTitle: 'Return the request',
    rejectHint: 'Tick or write what the applicant must complete or correct (at least one).',
    other: 'Other reason',
    confirm: 'Confirm',
    cancel: 'Cancel',
    conflict: 'Someone else acted on this request: its current state is shown, check it and try again.',
    noReason: 'Choose or write at least one reason',
    done: 'Done',
  },
  checklist: {
    history: 'The history is incomplete',
    images: 'Relevant images are missing',
    question: 'The question is unclear',
    diagnosis: 'The working diagnosis is missing or malformed',
  },
  action: {
    submit: 'Submitted',
    qc_pass: 'Passed QC',
    qc_reject: 'Returned by QC',
    schedule: 'Scheduled',
    check_in: 'Checked in',
    draft_report: 'Report drafted',
    sign: 'Report signed',
    amend: 'Report amended',
    close: 'Closed',
    cancel: 'Cancelled',
  },
  urgency: { routine: 'Routine', urgent: 'Urgent', emergency: 'Emergency' },
  state: {
    draft: 'Draft',
    submitted: 'Awaiting QC',
    rejected: 'Returned',
    qc_passed: 'To schedule',
    scheduled: 'Scheduled',
    in_progress: 'In progress',
    report_drafted: 'Report to sign',
    signed: 'Report signed',
    closed: 'Closed',
    cancelled: 'Cancelled',
  },
  errors: {
    required: 'Required',
    bad_credentials: 'Wrong login or password',
    locked: 'Locked after repeated wrong passwords: try again later',
    unauthenticated: 'Your session ended: log in again',
    totp_required: 'Enter the authenticator code',
    bad_totp: 'The code is wrong or already used',
    network: 'Cannot reach the server: check the network',
    internal: 'Internal error (logged)',
  },
};

export type Locale = 'zh-CN' | 'en';
const LOCALE_KEY = 'appliance.locale';

export function savedLocale(): Locale {
  return localStorage.getItem(LOCALE_KEY) === 'en' ? 'en' : 'zh-CN';
}

export function saveLocale(locale: Locale): void {
  localStorage.setItem(LOCALE_KEY, locale);
  document.documentElement.lang = locale;
}

export const i18n = createI18n({
  legacy: false,
  locale: savedLocale(),
  fallbackLocale: 'zh-CN',
  messages: { 'zh-CN': zh, en },
});

/** The words for an API error: its code's wording, else the API's own message. */
export function problemText(code: string, message: string): string {
  const key = `errors.${code}`;
  const t = i18n.global.t;
  const text = i18n.global.te(key) ? t(key) : '';
  return text || message || t('errors.network');
}

/** The words for a value of a group (`state.draft`, `kind.mdt`), or the value itself when the
 *  group has no word for it. */
export function valueLabel(group: string, value: string | undefined): string {
  if (!value) return '';
  const key = `${group}.${value}`;
  return i18n.global.te(key) ? i18n.global.t(key) : value;
}
