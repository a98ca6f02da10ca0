// The consultation centre's pages and who may open them: everything but the login page
// needs a session, and a user who must change the password goes to that page first.
import { type RouteLocationNormalizedLoaded, createRouter, createWebHistory } from 'vue-router';
import { whenSessionEnds } from '@/common/api/client';
import { useAuth } from '@/common/auth';

export const router = createRouter({
  history: createWebHistory('/centre/'),
  routes: [
    { path: '/', redirect: '/worklist' },
    { path: '/login', name: 'login', component: () => import('./views/LoginView.vue') },
    {
      path: '/password',
      name: 'password',
      component: () => import('./views/PasswordView.vue'),
    },
    { path: '/totp', name: 'totp', component: () => import('./views/TotpView.vue') },
    {
      path: '/worklist',
      name: 'worklist',
      component: () => import('./views/WorklistView.vue'),
    },
    { path: '/board', name: 'board', component: () => import('./views/BoardView.vue') },
    {
      path: '/referrals',
      name: 'referrals',
      component: () => import('./views/ReferralsView.vue'),
    },
    {
      path: '/referrals/new',
      name: 'refer',
      component: () => import('./views/ReferralFormView.vue'),
    },
    {
      path: '/referrals/:id(\\d+)',
      name: 'referral',
      component: () => import('./views/ReferralView.vue'),
    },
    {
      path: '/statistics',
      name: 'statistics',
      component: () => import('./views/StatisticsView.vue'),
    },
    {
      path: '/patients',
      name: 'patients',
      component: () => import('./views/PatientsView.vue'),
    },
    {
      path: '/patients/:id(\\d+)/record',
      name: 'record',
      component: () => import('./views/RecordView.vue'),
    },
    {
      path: '/consultations/new',
      name: 'apply',
      component: () => import('./views/ApplyView.vue'),
    },
    {
      path: '/consultations/:id(\\d+)/edit',
      name: 'edit',
      component: () => import('./views/ApplyView.vue'),
    },
    {
      path: '/consultations/:id(\\d+)/room',
      name: 'room',
      component: () => import('./views/RoomView.vue'),
    },
    {
      path: '/consultations/:id(\\d+)',
      name: 'case',
      component: () => import('./views/CaseView.vue'),
    },
    { path: '/:rest(.*)*', redirect: '/worklist' },
  ],
});

router.beforeEach(async (to) => {
  const auth = useAuth();
  await auth.restore();
  if (to.name === 'login') return true;
  if (!auth.loggedIn) return { name: 'login', query: { next: to.fullPath } };
  if (auth.mustChangePassword && to.name !== 'password') {
    return { name: 'password', query: { next: to.fullPath } };
  }
  if (!auth.mustChangePassword && auth.mustEnrollTotp && to.name !== 'totp') {
    return { name: 'totp', query: { next: to.fullPath } };
  }
  return true;
});

// A session that ends on the server (idle timeout) returns to login, and after login to
// the page the user was on; a half-filled form stays in the page's memory meanwhile.
whenSessionEnds(() => {
  useAuth().ended();
  const here = router.currentRoute.value;
  if (here.name !== 'login') {
    void router.push({ name: 'login', query: { next: here.fullPath, ended: '1' } });
  }
});

/** Where a page that interrupted the user (login, password, TOTP) goes when it is done: the
 *  page they were going to, else their worklist. */
export function nextPage(route: RouteLocationNormalizedLoaded): string {
  return typeof route.query.next === 'string' ? route.query.next : '/worklist';
}
