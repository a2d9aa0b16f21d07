// The sources page: switching namespace reloads it; deletions ask first.
const select = document.querySelector("[data-autosubmit]");
select?.addEventListener("change", () => select.form.requestSubmit());
document.addEventListener("submit", (event) => {
  const question = event.target.dataset?.confirm;
  if (question && !event.target.hasAttribute("data-async") && !window.confirm(question)) event.preventDefault();
});
