// The consultation centre's entry: Vue with the router, Pinia, i18n and the Element Plus
// components its pages use (imported one by one, so only those are shipped; a group's parts,
// such as ElRadioButton, are registered by their parent's install, ElRadio).
import {
  ElAlert,
  ElAutocomplete,
  ElBadge,
  ElButton,
  ElCard,
  ElCheckbox,
  ElCheckboxGroup,
  ElConfigProvider,
  ElDescriptions,
  ElDescriptionsItem,
  ElEmpty,
  ElForm,
  ElFormItem,
  ElInput,
  ElOption,
  ElRadio,
  ElRadioButton,
  ElRadioGroup,
  ElSelect,
  ElTable,
  ElTableColumn,
  ElTag,
  ElTimeline,
  ElTimelineItem,
} from 'element-plus';
import 'element-plus/dist/index.css';
import { createPinia } from 'pinia';
import { createApp } from 'vue';
import { i18n, savedLocale } from '@/common/i18n';
import App from './App.vue';
import { router } from './router';

document.documentElement.lang = savedLocale();
const app = createApp(App);
for (const c of [
  ElAlert,
  ElAutocomplete,
  ElBadge,
  ElButton,
  ElCard,
  ElCheckbox,
  ElCheckboxGroup,
  ElConfigProvider,
  ElDescriptions,
  ElDescriptionsItem,
  ElEmpty,
  ElForm,
  ElFormItem,
  ElInput,
  ElOption,
  ElRadio,
  ElRadioButton,
  ElRadioGroup,
  ElSelect,
  ElTable,
  ElTableColumn,
  ElTag,
  ElTimeline,
  ElTimelineItem,
]) {
  app.use(c);
}
app.use(createPinia()).use(i18n).use(router).mount('#app');
