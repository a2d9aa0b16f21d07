// Choosing another task reloads the form with that task's fields.
const select = document.querySelector("[data-autosubmit]");
select?.addEventListener("change", () => select.form.requestSubmit());
