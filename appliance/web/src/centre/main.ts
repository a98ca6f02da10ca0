// The consultation centre's entry: Vue with the router, Pinia and i18n. Each page and component
// imports the Element Plus components it uses, so a page's own chunk carries them and the
// first load only what the frame and the login page need.
import 'element-plus/dist/index.css';
import { createPinia } from 'pinia';
import { createApp } from 'vue';
import { i18n, savedLocale } from '@/common/i18n';
import App from './App.vue';
import { router } from './router';

document.documentElement.lang = savedLocale();
const app = createApp(App);
app.use(createPinia()).use(i18n).use(router).mount('#app');
